"""/webhooks/meta/: subscription check, signature, batches, duplicates, routing, unknown ids."""

import json
import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.conversations.models import Message
from apps.conversations import inbound
from apps.providers.models import InboundEvent
from tests.fakes import meta as fakes
from tests.fixtures.meta import IG_ID, PAGE_ID, VERIFY_TOKEN
from tests.meta import webhooks

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_meta")]

PSID = "6100000000000001"
IGSID = "17850000000000001"
WA_ID = "60123456789"


def test_get_answers_the_challenge_for_our_verify_token(client, meta_app):
    response = client.get(
        webhooks.URL, {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    )
    assert response.status_code == 200
    assert response.content == b"1158201444"


@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_get_refuses_another_verify_token(client, meta_app, token):
    response = client.get(webhooks.URL, {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "42"})
    assert response.status_code == 403
    assert b"42" not in response.content


def test_get_refuses_when_no_verify_token_is_configured(client, db):
    response = client.get(webhooks.URL, {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"})
    assert response.status_code == 403


def test_batch_of_three_channels_records_one_event_each_and_files_messages(
    meta_app, messenger_channel, instagram_channel, meta_whatsapp_channel, django_capture_on_commit_callbacks
):
    messenger_body = json.loads(
        fakes.webhook(
            "page",
            [
                fakes.messaging_entry(PAGE_ID, [fakes.messenger_text(PAGE_ID, PSID, "Hi from Messenger", mid="m_1")]),
                fakes.messaging_entry(PAGE_ID, [fakes.messenger_text(PAGE_ID, PSID, "Second entry", mid="m_2")]),
            ],
        )
    )
    webhooks.deliver(django_capture_on_commit_callbacks, messenger_body)
    webhooks.deliver(
        django_capture_on_commit_callbacks,
        webhooks.instagram(fakes.messenger_text(IG_ID, IGSID, "Hi from Instagram", mid="ig_1"), ig_id=IG_ID),
    )
    webhooks.deliver(
        django_capture_on_commit_callbacks,
        webhooks.whatsapp(
            messages=[fakes.whatsapp_text(WA_ID, "Hi from WhatsApp", wamid="wamid.A")],
            contacts=[fakes.whatsapp_contact(WA_ID, "Siti Rahman")],
        ),
    )

    events = InboundEvent.objects.order_by("pk")
    assert [(e.provider, e.destination, e.event_id, e.state) for e in events] == [
        ("meta", PAGE_ID, "m_1", "processed"),
        ("meta", PAGE_ID, "m_2", "processed"),
        ("meta", IG_ID, "ig_1", "processed"),
        ("meta", "106540352242922", "wamid.A", "processed"),
    ]
    by_channel = {m.external_id: m for m in Message.objects.select_related("conversation__contact")}
    assert by_channel["m_1"].channel == messenger_channel
    assert by_channel["m_1"].conversation == by_channel["m_2"].conversation
    assert by_channel["ig_1"].channel == instagram_channel
    assert by_channel["wamid.A"].channel == meta_whatsapp_channel
    whatsapp_contact = by_channel["wamid.A"].conversation.contact
    assert (whatsapp_contact.name, whatsapp_contact.phone) == ("Siti Rahman", "+60123456789")
    assert whatsapp_contact.identities.filter(kind="whatsapp", address="+60123456789").exists()
    assert by_channel["m_1"].conversation.contact.identities.filter(kind="messenger", address=PSID).exists()
    assert by_channel["ig_1"].conversation.contact.identities.filter(kind="instagram", address=IGSID).exists()


def test_one_post_with_entries_for_several_pages_routes_each(
    meta_app, messenger_channel, django_capture_on_commit_callbacks
):
    body = fakes.webhook(
        "page",
        [
            fakes.messaging_entry(PAGE_ID, [fakes.messenger_text(PAGE_ID, PSID, "ours", mid="m_ours")]),
            fakes.messaging_entry("999000111", [fakes.messenger_text("999000111", PSID, "someone else's", mid="m_x")]),
        ],
    )
    response = webhooks.deliver(django_capture_on_commit_callbacks, body)

    assert response.status_code == 200
    ours = InboundEvent.objects.get(event_id="m_ours")
    stranger = InboundEvent.objects.get(event_id="m_x")
    assert (ours.channel, ours.state) == (messenger_channel, "processed")
    assert (stranger.channel, stranger.destination, stranger.state) == (None, "999000111", "failed")
    assert "999000111" in stranger.last_error
    assert list(Message.objects.values_list("external_id", flat=True)) == ["m_ours"]


def test_same_post_again_and_a_retry_days_later_store_nothing_new(
    meta_app, messenger_channel, django_capture_on_commit_callbacks
):
    body = webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "Once", mid="m_once"), page_id=PAGE_ID)
    assert webhooks.deliver(django_capture_on_commit_callbacks, body).status_code == 200
    assert webhooks.deliver(django_capture_on_commit_callbacks, body).status_code == 200
    InboundEvent.objects.update(received_at=timezone.now() - timedelta(days=3))
    assert webhooks.deliver(django_capture_on_commit_callbacks, body).status_code == 200

    assert InboundEvent.objects.count() == 1
    assert Message.objects.filter(external_id="m_once").count() == 1
    assert InboundEvent.objects.get().attempts == 1


@pytest.mark.parametrize("signature", ["", "sha256=" + "0" * 64, "sha1=abc", "garbage"])
def test_bad_or_missing_signature_is_403_and_stores_nothing(meta_app, messenger_channel, signature, caplog):
    body = webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "forged", mid="m_forged"), page_id=PAGE_ID)
    with caplog.at_level(logging.WARNING, logger="apps.providers.kinds.meta.webhook"):
        response = webhooks.post(body, signature=signature)
    assert response.status_code == 403
    assert not InboundEvent.objects.exists()
    assert "signature" in caplog.text
    assert "forged" not in caplog.text


def test_signed_with_another_secret_is_403(meta_app, messenger_channel):
    body = webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "hello", mid="m_other"), page_id=PAGE_ID)
    assert webhooks.post(body, secret="not-the-app-secret").status_code == 403
    assert not InboundEvent.objects.exists()


def test_without_an_app_secret_nothing_is_accepted(db, messenger_channel):
    body = webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "hello", mid="m_1"), page_id=PAGE_ID)
    assert webhooks.post(body, secret="").status_code == 403
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"object": "page", "entry": {}}', b'{"object": "unknown", "entry": []}', b"[]",
     b'{"object": "page", "entry": [{"id": "1", "messaging": [{"message": {"text": "no mid"}}]}]}'],
)
def test_malformed_body_is_400_logged_and_stores_nothing(meta_app, messenger_channel, body, caplog):
    with caplog.at_level(logging.WARNING, logger="apps.providers.kinds.meta.webhook"):
        response = webhooks.post(body)
    assert response.status_code == 400
    assert "malformed" in caplog.text
    assert not InboundEvent.objects.exists()


def test_unknown_page_is_kept_logged_and_processed_once_the_page_is_connected(
    meta_app, django_capture_on_commit_callbacks, caplog, acme
):
    body = webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "Anyone there?", mid="m_early"), page_id=PAGE_ID)
    with caplog.at_level(logging.WARNING, logger="apps.providers.events"):
        response = webhooks.deliver(django_capture_on_commit_callbacks, body)

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.channel, event.destination, event.state, event.provider) == (None, PAGE_ID, "failed", "meta")
    assert PAGE_ID in caplog.text
    assert not Message.objects.exists()

    # The page gets connected; the sweep (or an admin's replay) processes what was kept.
    from apps.providers.models import Channel

    channel = Channel.objects.create(
        organization=acme, kind="messenger", name="Acme", address=PAGE_ID,
        config={"page_id": PAGE_ID}, secrets={"page_access_token": "t"},
    )
    InboundEvent.objects.update(received_at=timezone.now() - timedelta(minutes=5))
    assert event.pk in inbound.event_ids_due()
    inbound.event_process(event.pk)

    event.refresh_from_db()
    assert (event.channel, event.state) == (channel, "processed")
    assert Message.objects.get().text == "Anyone there?"


def test_database_down_answers_503_so_meta_retries(transactional_db, meta_app, messenger_channel):
    if connection.vendor != "postgresql":
        pytest.skip("needs a database server that can be unreachable")
    body = webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "hello", mid="m_down"), page_id=PAGE_ID)
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT="1")  # nothing listens there
    try:
        response = webhooks.post(body)
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert not InboundEvent.objects.exists()


def test_over_real_http_the_fake_can_post_signed(meta_app, messenger_channel, live_server, fake_meta, settings):
    body = webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "over the wire", mid="m_wire"), page_id=PAGE_ID)
    assert fake_meta.signed_post(live_server.url + webhooks.URL, body) == 200
    assert InboundEvent.objects.filter(event_id="m_wire").exists()
