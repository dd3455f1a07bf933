"""Settings → Integrations: owners and admins connect Meta through the pages; agents cannot."""

import logging
from urllib.parse import urlsplit

import pytest
import requests
from django.urls import reverse

from apps.accounts.models import Membership
from apps.providers.kinds.meta import connect as meta_connect
from apps.providers.models import Channel, MetaPendingConnection
from tests.fakes import meta as fake_errors
from tests.fixtures.meta import APP_SECRET, IG_ID, PAGE_ID, PAGE_TOKEN, PHONE_NUMBER_ID, WABA_ID, WHATSAPP_TOKEN

INTEGRATIONS = reverse("settings:integrations")


def follow_dialog(client, fake_meta):
    """Click "Connect Facebook Page", let the fake dialog approve, come back: the picker URL."""
    start = client.post(reverse("settings:meta-connect"))
    assert start.status_code == 302 and start["Location"].startswith(fake_meta.base_url)
    dialog = requests.get(start["Location"], allow_redirects=False, timeout=5)
    assert dialog.status_code == 302
    callback = urlsplit(dialog.headers["Location"])
    assert f"{callback.scheme}://{callback.netloc}" == "https://parley.test"
    back = client.get(f"{callback.path}?{callback.query}")
    assert back.status_code == 302
    return back["Location"]


def test_connect_a_page_through_the_pages(alice_client, meta_app, fake_meta, caplog):
    caplog.set_level(logging.DEBUG)
    picker_url = follow_dialog(alice_client, fake_meta)
    picker = alice_client.get(picker_url)
    assert picker.status_code == 200
    html = picker.content.decode()
    assert "Acme Support" in html and "@acme.support" in html
    assert PAGE_TOKEN not in html and "EAAL" not in html

    done = alice_client.post(picker_url, {"page_id": PAGE_ID})
    assert done.status_code == 302 and done["Location"] == INTEGRATIONS
    assert sorted(Channel.objects.values_list("kind", "address")) == [("instagram", IG_ID), ("messenger", PAGE_ID)]

    page = alice_client.get(INTEGRATIONS)
    html = page.content.decode()
    assert "Connected Messenger (Acme Support) and Instagram (@acme.support)." in html
    assert html.count(">Connected<") == 2 and "Disconnect" in html
    for secret in (PAGE_TOKEN, APP_SECRET, "EAAL", "EAAS"):
        assert secret not in html
        assert secret not in caplog.text


def test_the_callback_refuses_a_replayed_state(alice_client, meta_app, fake_meta):
    start = alice_client.post(reverse("settings:meta-connect"))
    dialog = requests.get(start["Location"], allow_redirects=False, timeout=5)
    callback = urlsplit(dialog.headers["Location"])
    assert alice_client.get(f"{callback.path}?{callback.query}").status_code == 302
    replay = alice_client.get(f"{callback.path}?{callback.query}", follow=True)
    assert replay.redirect_chain[-1][0] == INTEGRATIONS
    assert "This Facebook login link is not valid any more." in replay.content.decode()
    assert MetaPendingConnection.objects.count() == 1


def test_a_cancelled_dialog_connects_nothing(alice_client, meta_app, fake_meta):
    fake_meta.dialog_denied = True
    start = alice_client.post(reverse("settings:meta-connect"))
    dialog = requests.get(start["Location"], allow_redirects=False, timeout=5)
    callback = urlsplit(dialog.headers["Location"])
    page = alice_client.get(f"{callback.path}?{callback.query}", follow=True)
    assert "Facebook login was cancelled" in page.content.decode()
    assert not MetaPendingConnection.objects.exists() and not Channel.objects.exists()


def test_connect_without_a_meta_app_explains(alice_client, db):
    page = alice_client.post(reverse("settings:meta-connect"), follow=True)
    assert "The Meta app is not set up yet." in page.content.decode()


def test_a_channel_in_error_shows_its_reason_and_a_reconnect_button(alice_client, acme, meta_app, messenger_channel):
    messenger_channel.status = Channel.Status.ERROR
    messenger_channel.status_reason = meta_connect.TOKEN_PROBLEM_REASON
    messenger_channel.save()
    html = alice_client.get(INTEGRATIONS).content.decode()
    assert "Needs attention" in html
    assert "An admin must reconnect the page in Settings → Integrations." in html
    assert "Reconnect" in html
    assert PAGE_TOKEN not in html


def test_disconnect_through_the_page(alice_client, meta_app, fake_meta, messenger_channel, instagram_channel):
    fake_meta.subscriptions[PAGE_ID] = ["messages"]
    response = alice_client.post(reverse("settings:meta-disconnect", args=[instagram_channel.pk]), follow=True)
    assert "Disconnected the Facebook Page; its tokens were deleted." in response.content.decode()
    assert PAGE_ID not in fake_meta.subscriptions
    for channel in (messenger_channel, instagram_channel):
        channel.refresh_from_db()
        assert channel.status == Channel.Status.DISABLED and channel.secrets == {}


def test_whatsapp_cloud_form(alice_client, meta_app, fake_meta, caplog):
    caplog.set_level(logging.DEBUG)
    url = reverse("settings:whatsapp-cloud")
    bad = alice_client.post(url, {"waba_id": WABA_ID, "phone_number_id": PHONE_NUMBER_ID, "access_token": "EAA-wrong-1"})
    assert bad.status_code == 422
    html = bad.content.decode()
    assert "Meta refused this access token." in html
    assert f'value="{WABA_ID}"' in html and "EAA-wrong-1" not in html  # ids kept, token never echoed
    assert not Channel.objects.exists()

    ok = alice_client.post(url, {"waba_id": WABA_ID, "phone_number_id": PHONE_NUMBER_ID, "access_token": WHATSAPP_TOKEN})
    assert ok.status_code == 302
    page = alice_client.get(INTEGRATIONS).content.decode()
    assert "WhatsApp +1 555-019-2837" in page and "Access token: set" in page
    assert WHATSAPP_TOKEN not in page
    assert WHATSAPP_TOKEN not in caplog.text and "EAA-wrong-1" not in caplog.text


def test_twilio_channels_are_listed_with_an_admin_link(alice_client, whatsapp):
    html = alice_client.get(INTEGRATIONS).content.decode()
    assert whatsapp.config["sender"] in html
    assert reverse("admin:providers_channel_change", args=[whatsapp.pk]) in html
    assert whatsapp.secrets["auth_token"] not in html


def test_settings_link_shows_for_admins_only(alice_client, bob_client):
    assert INTEGRATIONS in alice_client.get(reverse("inbox:index")).content.decode()
    assert INTEGRATIONS not in bob_client.get(reverse("inbox:index")).content.decode()


@pytest.mark.parametrize(
    "method, name, needs_args",
    [("get", "settings:integrations", None), ("post", "settings:meta-connect", None),
     ("get", "settings:meta-callback", None), ("post", "settings:whatsapp-cloud", None),
     ("post", "settings:meta-disconnect", "channel"), ("get", "settings:meta-pages", "pending")],
)
def test_agents_cannot_reach_settings(method, name, needs_args, bob_client, alice, acme, meta_app, fake_meta,
                                      messenger_channel):
    args = []
    if needs_args == "channel":
        args = [messenger_channel.pk]
    elif needs_args == "pending":
        owner = Membership.objects.get(user=alice)
        args = [MetaPendingConnection.objects.create(
            organization=acme, membership=owner, pages=[], expires_at="2999-01-01T00:00:00Z").uuid]
    response = getattr(bob_client, method)(reverse(name, args=args))
    assert response.status_code == 403
    messenger_channel.refresh_from_db()
    assert messenger_channel.status == Channel.Status.ACTIVE


def test_anonymous_visitors_are_sent_to_login(client, db):
    response = client.get(INTEGRATIONS)
    assert response.status_code == 302 and "/login" in response["Location"]


def test_other_organizations_ids_answer_404(charlie_client, alice, acme, meta_app, fake_meta, messenger_channel):
    response = charlie_client.post(reverse("settings:meta-disconnect", args=[messenger_channel.pk]))
    assert response.status_code == 404
    messenger_channel.refresh_from_db()
    assert messenger_channel.status == Channel.Status.ACTIVE and messenger_channel.secrets
    pending = MetaPendingConnection.objects.create(
        organization=acme, membership=Membership.objects.get(user=alice), pages=[{"id": PAGE_ID, "name": "Acme"}],
        secrets={"page_tokens": {PAGE_ID: PAGE_TOKEN}}, expires_at="2999-01-01T00:00:00Z")
    assert charlie_client.get(reverse("settings:meta-pages", args=[pending.uuid])).status_code == 404
    assert charlie_client.post(reverse("settings:meta-pages", args=[pending.uuid]), {"page_id": PAGE_ID}).status_code == 404
    assert PAGE_ID not in fake_meta.subscriptions
    page = charlie_client.get(INTEGRATIONS).content.decode()
    assert "Acme Support" not in page


def test_disconnecting_a_non_meta_channel_answers_404(alice_client, whatsapp):
    assert alice_client.post(reverse("settings:meta-disconnect", args=[whatsapp.pk])).status_code == 404


def test_integrations_page_query_count(alice_client, meta_app, messenger_channel, instagram_channel,
                                       meta_whatsapp_channel, whatsapp, django_assert_max_num_queries):
    alice_client.get(INTEGRATIONS)  # warm the session
    with django_assert_max_num_queries(8):
        response = alice_client.get(INTEGRATIONS)
    assert response.status_code == 200


def test_a_failed_page_pick_shows_the_reason(alice_client, meta_app, fake_meta):
    picker_url = follow_dialog(alice_client, fake_meta)
    fake_meta.script(fake_errors.permission_denied(), endpoint="subscribed_apps")
    response = alice_client.post(picker_url, {"page_id": PAGE_ID})
    assert response.status_code == 422
    assert "allow every permission" in response.content.decode()
    assert not Channel.objects.exists()
