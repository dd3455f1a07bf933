"""Connecting a bot: getMe validates the token, setWebhook points the bot at the channel's webhook
with a random per-channel secret token (stored encrypted) and the updates we handle; check shows
getMe and getWebhookInfo; disconnect calls deleteWebhook. Through the service, the API and the
admin."""

import json

import pytest
from django.db import connection

from apps.core.errors import ServiceError
from apps.providers import catalog, services
from apps.providers.kinds import telegram
from apps.providers.models import Channel
from tests.fakes import telegram as fakes
from tests.fixtures.telegram import BOT_NAME, BOT_TOKEN, BOT_USERNAME

OTHER_TOKEN = "7098765432:AAGm2Xyz0123456789abcdefghijklmnopqr"
REVOKED_LOOKING = "6012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9"


def raw_secrets(channel) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM providers_channel WHERE id = %s", [channel.pk])
        return str(cursor.fetchone()[0])


def test_creating_a_channel_validates_the_token_and_sets_the_webhook(telegram_channel, fake_telegram):
    channel = Channel.objects.get(pk=telegram_channel.pk)
    hook = fake_telegram.webhook(BOT_TOKEN)
    assert hook["url"] == f"https://parley.test/webhooks/telegram/{channel.uuid}/"
    assert hook["allowed_updates"] == ["message", "edited_message", "callback_query", "my_chat_member"]
    secret = channel.secrets["webhook_secret"]
    assert hook["secret_token"] == secret and len(secret) >= 32
    assert [r.api_method for r in fake_telegram.requests] == ["getMe", "setWebhook"]
    assert channel.config == {"bot_id": "6012345678", "bot_username": BOT_USERNAME, "bot_name": BOT_NAME}
    assert (channel.status, services.channel_readiness(channel)) == ("active", (True, ""))
    # Both secrets are stored encrypted.
    assert BOT_TOKEN not in raw_secrets(channel) and secret not in raw_secrets(channel)


def test_each_channel_gets_its_own_secret_token(acme, fake_telegram):
    fake_telegram.add_bot(OTHER_TOKEN, username="acme_sales_bot")
    first = services.channel_create(organization=acme, kind="telegram", name="One", values={"bot_token": BOT_TOKEN})
    second = services.channel_create(organization=acme, kind="telegram", name="Two", values={"bot_token": OTHER_TOKEN})
    assert first.secrets["webhook_secret"] != second.secrets["webhook_secret"]
    assert fake_telegram.webhook(OTHER_TOKEN)["secret_token"] == second.secrets["webhook_secret"]


def test_a_token_of_the_wrong_shape_is_refused_before_any_call(acme, fake_telegram):
    with pytest.raises(services.CredentialsInvalid) as refused:
        services.channel_create(organization=acme, kind="telegram", name="x", values={"bot_token": "not a token"})
    assert refused.value.fields == {"bot_token": telegram.INVALID_TOKEN}
    assert fake_telegram.requests == [] and not Channel.objects.exists()


def test_a_token_telegram_does_not_know_stores_nothing(acme, fake_telegram):
    with pytest.raises(ServiceError) as refused:
        services.channel_create(organization=acme, kind="telegram", name="x", values={"bot_token": REVOKED_LOOKING})
    assert (refused.value.code, refused.value.message) == ("connect_failed", telegram.TOKEN_REFUSED)
    assert [r.api_method for r in fake_telegram.requests] == ["getMe"]
    assert not Channel.objects.exists()


def test_telegram_calls_only_https_addresses(acme, fake_telegram, settings):
    settings.PUBLIC_BASE_URL = "http://parley.internal:8000"
    with pytest.raises(ServiceError) as refused:
        services.channel_create(organization=acme, kind="telegram", name="x", values={"bot_token": BOT_TOKEN})
    message = refused.value.message
    assert message.startswith("Telegram refused to call http://parley.internal:8000/webhooks/telegram/")
    assert message.endswith("/: bad webhook: An HTTPS URL must be provided for webhook. Telegram calls only public "
                            "HTTPS addresses on ports 443, 80, 88 or 8443 (PUBLIC_BASE_URL).")
    assert not Channel.objects.exists()


def test_telegram_unreachable_says_so_and_stores_nothing(acme, fake_telegram, settings):
    from tests.fakes.ports import free_port

    settings.TELEGRAM_API_BASE = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceError) as refused:
        services.channel_create(organization=acme, kind="telegram", name="x", values={"bot_token": BOT_TOKEN})
    assert refused.value.message == "Telegram could not be reached; try again in a moment."
    assert BOT_TOKEN not in refused.value.message
    assert not Channel.objects.exists()


def test_a_rate_limited_connect_says_so(acme, fake_telegram):
    fake_telegram.script(fakes.too_many_requests(3), method="setWebhook")
    with pytest.raises(ServiceError, match="Telegram is rate limiting this bot; try again in a minute."):
        services.channel_create(organization=acme, kind="telegram", name="x", values={"bot_token": BOT_TOKEN})


def test_a_disabled_channel_is_stored_without_connecting(acme, fake_telegram):
    channel = services.channel_create(organization=acme, kind="telegram", name="x", values={"bot_token": BOT_TOKEN},
                                      enabled=False)
    assert channel.status == "disabled" and fake_telegram.requests == []
    assert channel.secrets["webhook_secret"]  # generated all the same
    # Enabling it connects it.
    channel = services.channel_configure(channel=channel, values={}, enabled=True)
    assert channel.status == "active"
    assert fake_telegram.webhook(BOT_TOKEN)["secret_token"] == channel.secrets["webhook_secret"]


# Check and disconnect -----------------------------------------------------------------------------


def test_check_shows_the_bot_and_its_webhook(telegram_channel, fake_telegram):
    health = catalog.adapter_for(telegram_channel).check()
    assert health.ok and health.summary == f"Connected to {BOT_NAME} (@{BOT_USERNAME})."
    assert health.details == (
        f"Bot: {BOT_NAME} (@{BOT_USERNAME})",
        f"Webhook: https://parley.test/webhooks/telegram/{telegram_channel.uuid}/",
        "Updates waiting: 0",
    )
    assert [r.api_method for r in fake_telegram.requests[-2:]] == ["getMe", "getWebhookInfo"]


def test_check_shows_telegram_s_last_delivery_error(telegram_channel, fake_telegram):
    fake_telegram.set_delivery_error(BOT_TOKEN, "Wrong response from the webhook: 503 Service Unavailable",
                                     pending=4, at=1764633600)
    health = catalog.adapter_for(telegram_channel).check()
    assert not health.ok
    assert health.summary == (
        f"Telegram cannot deliver updates to {BOT_NAME} (@{BOT_USERNAME}): Wrong response from the webhook: 503 "
        "Service Unavailable."
    )
    assert health.details[-2:] == (
        "Updates waiting: 4", "Last delivery error (2025-12-02 00:00 UTC): Wrong response from the webhook: 503 "
        "Service Unavailable",
    )


def test_check_notices_a_webhook_pointing_elsewhere_and_a_revoked_token(telegram_channel, fake_telegram):
    adapter = catalog.adapter_for(telegram_channel)
    fake_telegram.bot(BOT_TOKEN).webhook["url"] = "https://other.example.com/hook"
    health = adapter.check()
    assert not health.ok and "does not point to this channel" in health.summary
    fake_telegram.revoke(BOT_TOKEN)
    health = adapter.check()
    assert (health.ok, health.summary, health.details) == (False, telegram.TOKEN_REFUSED, ())


def test_check_when_telegram_is_unreachable(telegram_channel, settings):
    from tests.fakes.ports import free_port

    settings.TELEGRAM_API_BASE = f"http://127.0.0.1:{free_port()}"
    health = catalog.adapter_for(telegram_channel).check()
    assert (health.ok, health.summary) == (False, "Telegram could not be reached; try again in a moment.")


def test_disconnect_deletes_the_webhook(telegram_channel, fake_telegram):
    catalog.adapter_for(telegram_channel).disconnect()
    assert fake_telegram.webhook(BOT_TOKEN) == {}
    assert fake_telegram.requests[-1].api_method == "deleteWebhook"


# Reconfiguring ---------------------------------------------------------------------------------------


def test_a_new_bot_token_moves_the_webhook_to_the_new_bot(telegram_channel, fake_telegram):
    fake_telegram.add_bot(OTHER_TOKEN, username="acme_sales_bot", first_name="Acme Sales")
    channel = services.channel_configure(channel=telegram_channel, values={"bot_token": OTHER_TOKEN})
    assert channel.secrets["bot_token"] == OTHER_TOKEN
    assert channel.config["bot_username"] == "acme_sales_bot"
    assert fake_telegram.webhook(OTHER_TOKEN)["url"].endswith(f"/webhooks/telegram/{channel.uuid}/")
    assert fake_telegram.webhook(BOT_TOKEN) == {}  # the old bot stops calling us


def test_a_refused_new_token_keeps_the_old_one(telegram_channel, fake_telegram):
    with pytest.raises(ServiceError, match="did not accept this bot token"):
        services.channel_configure(channel=telegram_channel, values={"bot_token": REVOKED_LOOKING})
    telegram_channel.refresh_from_db()
    assert telegram_channel.secrets["bot_token"] == BOT_TOKEN and telegram_channel.status == "active"


def test_a_channel_in_error_reconnects_when_saved_again(telegram_channel, fake_telegram):
    services.channel_mark_error(channel=telegram_channel, reason=telegram.RECONNECT)
    fake_telegram.bot(BOT_TOKEN).webhook = {}
    channel = services.channel_configure(channel=telegram_channel, values={"bot_token": BOT_TOKEN})
    assert (channel.status, channel.status_reason) == ("active", "")
    assert fake_telegram.webhook(BOT_TOKEN)["secret_token"] == channel.secrets["webhook_secret"]


def test_renaming_calls_nobody(telegram_channel, fake_telegram):
    before = len(fake_telegram.requests)
    channel = services.channel_configure(channel=telegram_channel, values={}, name="Telegram support")
    assert channel.name == "Telegram support" and len(fake_telegram.requests) == before


# Through the API and the admin --------------------------------------------------------------------


def test_the_api_connects_a_bot_and_never_shows_its_token(alice_client, acme, fake_telegram):
    response = alice_client.post("/api/v1/channels/", {"kind": "telegram", "name": "Support bot",
                                                       "credentials": {"bot_token": BOT_TOKEN}},
                                 content_type="application/json")
    assert response.status_code == 201, response.content
    text = response.content.decode()
    channel = Channel.objects.get()
    assert BOT_TOKEN not in text and channel.secrets["webhook_secret"] not in text
    created = json.loads(text)
    assert created["kind"] == "telegram" and created["family"] == "telegram" and created["status"] == "active"
    assert created["secrets"] == {"bot_token": "set", "webhook_secret": "set"} and created["ready"] is True
    assert created["webhooks"] == {"inbound": f"https://parley.test/webhooks/telegram/{channel.uuid}/"}
    assert created["policy"]["text_limit"] == 4096 and created["policy"]["max_buttons"] == 6
    assert fake_telegram.webhook(BOT_TOKEN)["url"] == created["webhooks"]["inbound"]


def test_the_api_answers_a_refused_token_with_400(alice_client, acme, fake_telegram):
    response = alice_client.post("/api/v1/channels/", {"kind": "telegram", "credentials": {"bot_token": REVOKED_LOOKING}},
                                 content_type="application/json")
    assert response.status_code == 400
    assert json.loads(response.content) == {"error": {"code": "connect_failed", "message": telegram.TOKEN_REFUSED}}
    response = alice_client.post("/api/v1/channels/", {"kind": "telegram", "credentials": {}},
                                 content_type="application/json")
    assert response.status_code == 400
    assert json.loads(response.content)["error"]["message"] == "bot_token: This field is required."
    assert not Channel.objects.exists()


def test_the_admin_keeps_a_refused_channel_in_error_with_the_reason(acme, fake_telegram, db):
    from django.test import Client

    from tests import factories

    root = factories.UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    response = client.post("/admin/providers/channel/add/", {
        "organization": acme.pk, "kind": "telegram", "name": "Bot", "settings": "{}", "enabled": "on",
        "replace_bot_token": REVOKED_LOOKING, "replace_webhook_secret": "", "_save": "Save",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    channel = Channel.objects.get()
    assert (channel.status, channel.status_reason) == ("error", telegram.TOKEN_REFUSED)
    page = client.get(f"/admin/providers/channel/{channel.pk}/change/").content.decode()
    assert REVOKED_LOOKING not in page and channel.secrets["webhook_secret"] not in page

    response = client.post(f"/admin/providers/channel/{channel.pk}/change/", {
        "organization": acme.pk, "kind": "telegram", "name": "Bot", "settings": "{}", "enabled": "on",
        "replace_bot_token": BOT_TOKEN, "replace_webhook_secret": "", "_save": "Save",
    })
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.status == "active" and fake_telegram.webhook(BOT_TOKEN)["secret_token"] == channel.secrets["webhook_secret"]
