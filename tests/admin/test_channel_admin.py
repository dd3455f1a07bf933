from django.db import connection

from apps.core import crypto
from apps.providers.models import Channel
from tests import factories

NEW_TOKEN = "replaced-auth-token-abcdef0123456789"


def change_url(channel) -> str:
    return f"/admin/providers/channel/{channel.pk}/change/"


def form_data(channel, **overrides) -> dict:
    data = {
        "organization": channel.organization_id,
        "kind": channel.kind,
        "name": channel.name,
        "settings": "{}",
        "account_sid": channel.config.get("account_sid", ""),
        "sender": channel.config.get("sender", ""),
        "enabled": "on",
        "replace_auth_token": "",
        "_save": "Save",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def raw_secrets(channel) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM providers_channel WHERE id = %s", [channel.pk])
        return cursor.fetchone()[0]


def test_change_page_never_contains_the_auth_token(root_client, whatsapp):
    response = root_client.get(change_url(whatsapp))
    assert response.status_code == 200
    html = response.content.decode()
    assert factories.TEST_AUTH_TOKEN not in html
    assert "Replace auth token" in html and 'name="replace_auth_token"' in html
    assert "<div class=\"readonly\">set</div>" in html
    assert factories.TEST_ACCOUNT_SID in html  # the account SID is not a secret


def test_unset_token_shows_not_set(root_client, acme):
    channel = factories.ChannelFactory(organization=acme, secrets={})
    assert "<div class=\"readonly\">not set</div>" in root_client.get(change_url(channel)).content.decode()


def test_leaving_the_replace_field_empty_keeps_the_token(root_client, whatsapp):
    response = root_client.post(change_url(whatsapp), form_data(whatsapp, name="Support WhatsApp"))
    assert response.status_code == 302, response.content.decode()[:2000]
    whatsapp.refresh_from_db()
    assert whatsapp.name == "Support WhatsApp"
    assert whatsapp.secrets == {"auth_token": factories.TEST_AUTH_TOKEN}


def test_replacing_the_token_stores_it_encrypted(root_client, whatsapp):
    response = root_client.post(change_url(whatsapp), form_data(whatsapp, replace_auth_token=NEW_TOKEN))
    assert response.status_code == 302
    whatsapp.refresh_from_db()
    assert whatsapp.secrets == {"auth_token": NEW_TOKEN}
    stored = raw_secrets(whatsapp)
    assert NEW_TOKEN not in stored and "auth_token" not in stored
    assert crypto.decrypt(stored) == '{"auth_token": "' + NEW_TOKEN + '"}'
    assert NEW_TOKEN not in root_client.get(change_url(whatsapp)).content.decode()


def test_a_rejected_form_does_not_echo_the_new_token(root_client, whatsapp):
    response = root_client.post(
        change_url(whatsapp), form_data(whatsapp, account_sid="not-a-sid", replace_auth_token=NEW_TOKEN)
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "A Twilio account SID starts with AC and has 34 characters." in html
    assert NEW_TOKEN not in html and factories.TEST_AUTH_TOKEN not in html
    whatsapp.refresh_from_db()
    assert whatsapp.secrets == {"auth_token": factories.TEST_AUTH_TOKEN}


def test_disable_and_enable(root_client, whatsapp):
    root_client.post(change_url(whatsapp), form_data(whatsapp, enabled=None))
    whatsapp.refresh_from_db()
    assert whatsapp.status == "disabled"
    root_client.post(change_url(whatsapp), form_data(whatsapp))
    whatsapp.refresh_from_db()
    assert whatsapp.status == "active"


def test_add_a_channel_with_a_sender_without_prefix(root_client, acme):
    response = root_client.post(
        "/admin/providers/channel/add/",
        {
            "organization": acme.pk,
            "kind": "twilio_whatsapp",
            "name": "Sales",
            "settings": "{}",
            "account_sid": factories.TEST_ACCOUNT_SID,
            "sender": "+14155238886",
            "enabled": "on",
            "replace_auth_token": NEW_TOKEN,
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    channel = Channel.objects.get(name="Sales")
    assert channel.config == {"account_sid": factories.TEST_ACCOUNT_SID, "sender": "whatsapp:+14155238886"}
    assert channel.secrets == {"auth_token": NEW_TOKEN} and channel.status == "active"


def test_list_shows_status_and_reason(root_client, whatsapp):
    Channel.objects.filter(pk=whatsapp.pk).update(
        status="error", status_reason="Invalid WhatsApp configuration for your organization. Please contact admin."
    )
    html = root_client.get("/admin/providers/channel/").content.decode()
    assert "Invalid WhatsApp configuration for your organization. Please contact admin." in html
    assert factories.TEST_AUTH_TOKEN not in html


def test_staff_see_only_their_organizations(staff_client, whatsapp, globex):
    theirs = factories.ChannelFactory(organization=globex, name="Globex line")
    html = staff_client.get("/admin/providers/channel/").content.decode()
    assert change_url(whatsapp) in html and change_url(theirs) not in html
    assert staff_client.get(change_url(theirs)).status_code == 302  # "doesn't exist" redirect to the list
    page = staff_client.get(change_url(whatsapp)).content.decode()
    assert f'<option value="{globex.pk}"' not in page
