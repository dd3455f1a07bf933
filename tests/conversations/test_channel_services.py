"""Channel readiness, error marking and Twilio configuration (write-only token)."""

from apps.providers import services
from apps.providers.models import Channel
from tests import factories

NOT_CONFIGURED = "WhatsApp is not configured for this organization."


def test_a_configured_active_channel_is_ready(whatsapp):
    assert services.channel_readiness(whatsapp) == (True, "")


def test_missing_credentials_or_disabled_is_not_configured(acme):
    empty = factories.ChannelFactory(organization=acme, config={}, secrets={})
    assert services.channel_readiness(empty) == (False, NOT_CONFIGURED)
    disabled = factories.ChannelFactory(organization=acme, status=Channel.Status.DISABLED)
    assert services.channel_readiness(disabled) == (False, NOT_CONFIGURED)


def test_other_kinds_use_their_label(acme):
    sms = factories.ChannelFactory(organization=acme, kind="twilio_sms", status=Channel.Status.DISABLED)
    assert services.channel_readiness(sms) == (False, "SMS is not configured for this organization.")


def test_mark_error_keeps_the_reason(whatsapp):
    services.channel_mark_error(channel=whatsapp, reason="Invalid WhatsApp configuration for your organization. Please contact admin.")
    whatsapp.refresh_from_db()
    assert whatsapp.status == Channel.Status.ERROR
    assert services.channel_readiness(whatsapp) == (
        False, "Invalid WhatsApp configuration for your organization. Please contact admin.")


def test_configure_keeps_the_stored_token_when_none_is_given(whatsapp):
    services.channel_configure(channel=whatsapp, values={"account_sid": "AC" + "2" * 32, "sender": "+14155550000"})
    whatsapp.refresh_from_db()
    assert whatsapp.config == {"account_sid": "AC" + "2" * 32, "sender": "whatsapp:+14155550000"}
    assert whatsapp.secrets == {"auth_token": factories.TEST_AUTH_TOKEN}


def test_new_credentials_clear_the_error(whatsapp):
    services.channel_mark_error(channel=whatsapp, reason="bad")
    services.channel_configure(channel=whatsapp, values={"account_sid": factories.TEST_ACCOUNT_SID, "sender": factories.TEST_SENDER})
    whatsapp.refresh_from_db()
    assert whatsapp.status == Channel.Status.ERROR  # nothing changed: still broken
    services.channel_configure(channel=whatsapp, values={"auth_token": "new-token"})
    whatsapp.refresh_from_db()
    assert (whatsapp.status, whatsapp.status_reason, whatsapp.secrets["auth_token"]) == ("active", "", "new-token")


def test_disabling(whatsapp):
    services.channel_configure(channel=whatsapp, values={}, enabled=False)
    whatsapp.refresh_from_db()
    assert services.channel_readiness(whatsapp) == (False, NOT_CONFIGURED)


def test_the_token_is_encrypted_at_rest(whatsapp):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("select secrets from providers_channel where id = %s", [whatsapp.pk])
        raw = cursor.fetchone()[0]
    assert factories.TEST_AUTH_TOKEN not in raw
