import json

from django.test import override_settings

from apps.providers.models import Channel
from tests import factories
from tests.api.conftest import body

LIST = "/api/v1/channels/"
NEW_TOKEN = "brand-new-auth-token-9876543210"


def test_channel_shape_has_webhooks_and_policy_but_no_secret(alice_client, whatsapp):
    response = alice_client.get(LIST)
    assert response.status_code == 200
    assert factories.TEST_AUTH_TOKEN not in response.content.decode()
    [channel] = body(response)
    assert channel["id"] == whatsapp.pk and channel["uuid"] == str(whatsapp.uuid)
    assert channel["kind"] == "twilio_whatsapp" and channel["status"] == "active" and channel["configured"] is True
    assert channel["webhooks"] == {
        "inbound": f"https://parley.test/webhooks/twilio/{whatsapp.uuid}/",
        "status": f"https://parley.test/webhooks/twilio/{whatsapp.uuid}/status/",
    }
    policy = channel["policy"]
    assert policy["label"] == "WhatsApp" and policy["text_limit"] == 4096 and policy["reply_window_hours"] == 24
    assert "image/jpeg" in policy["accepted_media_types"] and "application/pdf" in policy["accepted_media_types"]
    assert channel["config"] == {"account_sid": factories.TEST_ACCOUNT_SID, "sender": factories.TEST_SENDER}
    assert channel["secrets"] == {"auth_token": "set"}  # whether it is stored, never the value


def test_unconfigured_or_disabled_channel_says_so(alice_client, whatsapp):
    assert body(alice_client.get(LIST))[0]["ready"] is True
    assert body(alice_client.get(LIST))[0]["not_ready_reason"] == ""
    Channel.objects.filter(pk=whatsapp.pk).update(secrets={})
    channel = body(alice_client.get(LIST))[0]
    assert channel["configured"] is False and channel["ready"] is False
    assert channel["not_ready_reason"] == "WhatsApp is not configured for this organization."
    Channel.objects.filter(pk=whatsapp.pk).update(secrets={"auth_token": "x"}, status="disabled")
    channel = body(alice_client.get(LIST))[0]
    assert channel["configured"] is True and channel["ready"] is False
    assert channel["not_ready_reason"] == "WhatsApp is not configured for this organization."


def test_agent_sees_only_channels_given_to_them(bob_client, bob, alice_client, whatsapp, acme, grant):
    vip = factories.ChannelFactory(organization=acme, name="VIP line")
    assert body(bob_client.get(LIST)) == []
    grant(bob, whatsapp)
    assert [c["id"] for c in body(bob_client.get(LIST))] == [whatsapp.pk]
    assert body(bob_client.get(LIST))[0]["config"] == {}  # agents do not need the account
    assert bob_client.get(f"/api/v1/channels/{vip.pk}/").status_code == 404
    assert bob_client.get(f"/api/v1/channels/{vip.pk}/eligible-contacts/").status_code == 404
    assert {c["id"] for c in body(alice_client.get(LIST))} == {whatsapp.pk, vip.pk}


def test_admin_creates_a_twilio_channel_and_the_token_stays_hidden(alice_client, acme):
    response = alice_client.post(
        LIST,
        {"kind": "twilio_whatsapp", "name": "Sales", "credentials": {
            "account_sid": factories.TEST_ACCOUNT_SID, "sender": "+14155238886", "auth_token": NEW_TOKEN}},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert NEW_TOKEN not in response.content.decode()
    created = body(response)
    assert created["config"]["sender"] == "whatsapp:+14155238886" and created["configured"] is True
    assert created["status"] == "active"
    channel = Channel.objects.get(pk=created["id"])
    assert channel.organization == acme and channel.secrets == {"auth_token": NEW_TOKEN}


def test_admin_updates_keep_the_token_unless_replaced(alice_client, whatsapp):
    url = f"/api/v1/channels/{whatsapp.pk}/"
    response = alice_client.patch(url, {"enabled": False}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert body(response)["status"] == "disabled"
    whatsapp.refresh_from_db()
    assert whatsapp.secrets == {"auth_token": factories.TEST_AUTH_TOKEN}
    assert whatsapp.config["account_sid"] == factories.TEST_ACCOUNT_SID

    response = alice_client.patch(url, {"credentials": {"auth_token": NEW_TOKEN}, "enabled": True},
                                  content_type="application/json")
    assert NEW_TOKEN not in response.content.decode() and body(response)["status"] == "active"
    whatsapp.refresh_from_db()
    assert whatsapp.secrets == {"auth_token": NEW_TOKEN}


def test_invalid_configuration_is_refused(alice_client, whatsapp):
    response = alice_client.patch(
        f"/api/v1/channels/{whatsapp.pk}/", {"credentials": {"account_sid": "XX123"}}, content_type="application/json"
    )
    assert response.status_code == 400
    assert body(response)["error"]["message"] == (
        "account_sid: A Twilio account SID starts with AC and has 34 characters."
    )


def test_agents_cannot_configure_channels(bob_client, bob, whatsapp, grant):
    grant(bob, whatsapp)
    response = bob_client.patch(f"/api/v1/channels/{whatsapp.pk}/", {"enabled": False}, content_type="application/json")
    assert response.status_code == 403
    assert body(response) == {
        "error": {"code": "permission_denied", "message": "Only organization admins can do this."}
    }
    response = bob_client.post(LIST, {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    whatsapp.refresh_from_db()
    assert whatsapp.status == "active"


def test_eligible_contacts_and_the_empty_message(alice_client, whatsapp, acme, customer):
    factories.ContactFactory(organization=acme, name="No consent", whatsapp_opt_in=False)
    factories.ContactFactory(organization=acme, name="No phone", phone="")
    url = f"/api/v1/channels/{whatsapp.pk}/eligible-contacts/"
    page = body(alice_client.get(url))
    assert [c["name"] for c in page["results"]] == ["Siti Rahman"] and page["empty_message"] == ""
    assert body(alice_client.get(url, {"search": "siti"}))["results"][0]["id"] == customer.pk

    customer.consents.filter(kind="whatsapp").update(opted_in=False)
    page = body(alice_client.get(url))
    assert page["results"] == []
    assert page["empty_message"] == "No contacts with WhatsApp opt-in found."


@override_settings(PUBLIC_BASE_URL="https://inbox.example.com")
def test_webhook_urls_follow_public_base_url(alice_client, whatsapp):
    assert json.loads(alice_client.get(LIST).content)[0]["webhooks"]["inbound"].startswith("https://inbox.example.com/")
