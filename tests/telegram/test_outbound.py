"""Sending on Telegram through message_send and the outbox, against the fake Bot API: text up to
4,096 characters, photos, documents, audio and video (uploaded), reply buttons (an inline
keyboard), typing, and every refusal's effect."""

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.accounts.models import Membership
from apps.contacts import services as contact_services
from apps.conversations import attachments, receipts, sending
from apps.conversations.models import Conversation, Message
from apps.core.errors import ServiceError
from apps.providers.kinds import telegram
from apps.providers.kinds.base import (
    BLOCKED,
    CONFIGURATION,
    RATE_LIMITED,
    TransientSendError,
)
from apps.providers.models import Channel
from tests.factories import policy_for
from tests.fakes import telegram as fakes
from tests.fixtures.telegram import BOT_TOKEN, CHAT_ID

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def membership(alice, acme):
    return Membership.objects.get(user=alice, organization=acme)


@pytest.fixture
def conversation(telegram_channel):
    contact, _ = contact_services.contact_resolve(organization=telegram_channel.organization, kind="telegram",
                                                  address=str(CHAT_ID), name="Ana Silva")
    return Conversation.objects.create(organization=telegram_channel.organization, contact=contact,
                                       channel=telegram_channel, last_inbound_at=timezone.now() - timedelta(days=30))


@pytest.fixture
def send(membership, django_capture_on_commit_callbacks):
    def run(conversation, text="Hello from Acme", **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            message = sending.message_send(membership=membership, conversation=conversation, text=text, **kwargs)
        message.refresh_from_db()
        return message

    return run


def upload(membership, name: str, content: bytes, content_type: str):
    return attachments.attachment_upload(
        membership=membership, uploaded_file=SimpleUploadedFile(name, content, content_type=content_type),
        policy=policy_for("telegram"),
    )


def test_a_reply_is_a_sendmessage_with_no_window_to_worry_about(send, conversation, fake_telegram):
    message = send(conversation, "We ship tomorrow")
    [sent] = fake_telegram.sent
    assert (sent["method"], sent["params"]) == ("sendMessage", {"chat_id": str(CHAT_ID), "text": "We ship tomorrow"})
    assert (message.status, message.external_id) == ("sent", f"{CHAT_ID}:{sent['result']['message_id']}")


def test_text_over_4096_characters_is_refused_before_sending(send, conversation, fake_telegram):
    assert send(conversation, "x" * 4096).status == "sent"
    with pytest.raises(ServiceError, match="Messages on Telegram can be at most 4096 characters."):
        send(conversation, "x" * 4097)
    assert len(fake_telegram.sent) == 1


def test_reply_buttons_go_out_as_an_inline_keyboard_and_stay_on_the_message(send, conversation, fake_telegram):
    long_label = "Ünïcödé " * 8  # 64 characters, more than 64 bytes
    message = send(conversation, "Shall we send a replacement?", buttons=["Yes, please", " No,  a refund ", "",
                                                                          long_label.strip()])
    [sent] = fake_telegram.sent
    keyboard = json.loads(sent["params"]["reply_markup"])["inline_keyboard"]
    assert [row[0]["text"] for row in keyboard] == ["Yes, please", "No, a refund", long_label.strip()]
    assert all(len(row) == 1 and len(row[0]["callback_data"].encode()) <= 64 for row in keyboard)
    assert keyboard[0][0]["callback_data"] == "Yes, please"
    assert long_label.strip().startswith(keyboard[2][0]["callback_data"])  # cut at a character, not mid-byte
    assert message.buttons == [{"text": "Yes, please"}, {"text": "No, a refund"}, {"text": long_label.strip()}]


def test_reply_buttons_follow_the_policy(send, conversation, whatsapp, customer, membership):
    with pytest.raises(ServiceError, match="at most 6 buttons"):
        send(conversation, "Pick one", buttons=[f"Option {n}" for n in range(7)])
    with pytest.raises(ServiceError, match="A button can say at most 64 characters"):
        send(conversation, "Pick one", buttons=["x" * 65])
    whatsapp_conversation = Conversation.objects.create(organization=whatsapp.organization, contact=customer,
                                                        channel=whatsapp, last_inbound_at=timezone.now())
    with pytest.raises(ServiceError) as refused:
        send(whatsapp_conversation, "Pick one", buttons=["Yes"])
    assert (refused.value.code, refused.value.message) == (
        "buttons_not_supported", "WhatsApp messages cannot carry reply buttons.")
    assert not Message.objects.filter(direction="outbound").exists()


def test_a_photo_is_uploaded_with_the_text_as_its_caption_and_the_buttons_under_it(send, conversation, membership,
                                                                                    fake_telegram):
    photo = upload(membership, "box.png", PNG, "image/png")
    message = send(conversation, "Is this your box?", attachment_ids=[photo.pk], buttons=["Yes", "No"])
    [sent] = fake_telegram.sent
    assert sent["method"] == "sendPhoto"
    assert sent["params"]["photo"] == {"filename": "box.png", "content_type": "image/png", "content": PNG}
    assert sent["params"]["caption"] == "Is this your box?"
    assert json.loads(sent["params"]["reply_markup"])["inline_keyboard"] == [
        [{"text": "Yes", "callback_data": "Yes"}], [{"text": "No", "callback_data": "No"}]]
    assert (message.status, message.type) == ("sent", "image")


@pytest.mark.parametrize("name, content_type, method", [
    ("invoice.pdf", "application/pdf", "sendDocument"),
    ("notes.txt", "text/plain", "sendDocument"),
    ("jingle.mp3", "audio/mpeg", "sendAudio"),
    ("note.ogg", "audio/ogg", "sendVoice"),
    ("clip.mp4", "video/mp4", "sendVideo"),
    ("wave.gif", "image/gif", "sendAnimation"),
])
def test_each_kind_of_file_goes_out_through_its_method(send, conversation, membership, fake_telegram, name,
                                                       content_type, method):
    attachment = upload(membership, name, b"file-bytes", content_type)
    assert send(conversation, "", attachment_ids=[attachment.pk]).status == "sent"
    [sent] = fake_telegram.sent
    assert sent["method"] == method and "caption" not in sent["params"]


def test_a_long_text_with_files_goes_after_them_on_its_own(send, conversation, membership, fake_telegram):
    first = upload(membership, "a.pdf", b"%PDF a", "application/pdf")
    second = upload(membership, "b.pdf", b"%PDF b", "application/pdf")
    text = "Details: " + "y" * 1100
    message = send(conversation, text, attachment_ids=[first.pk, second.pk], buttons=["Thanks"])
    assert [s["method"] for s in fake_telegram.sent] == ["sendDocument", "sendDocument", "sendMessage"]
    assert [("reply_markup" in s["params"]) for s in fake_telegram.sent] == [False, False, True]
    assert fake_telegram.sent[-1]["params"]["text"] == text
    assert message.external_id == f"{CHAT_ID}:{fake_telegram.sent[-1]['result']['message_id']}"


def test_a_short_flood_wait_between_parts_is_waited_out(send, conversation, membership, fake_telegram):
    photo = upload(membership, "box.png", PNG, "image/png")
    fake_telegram.script(fakes.too_many_requests(1), method="sendMessage")
    message = send(conversation, "w" * 1500, attachment_ids=[photo.pk])
    assert message.status == "sent"
    assert [s["method"] for s in fake_telegram.sent] == ["sendPhoto", "sendMessage"]
    assert len(fake_telegram.calls("sendMessage")) == 2


def test_a_long_flood_wait_between_parts_leaves_the_message_unknown(send, conversation, membership, fake_telegram):
    photo = upload(membership, "box.png", PNG, "image/png")
    fake_telegram.script(fakes.too_many_requests(30), method="sendMessage")
    message = send(conversation, "w" * 1500, attachment_ids=[photo.pk])
    assert (message.status, message.error_code) == ("unknown", "partial")
    assert len(fake_telegram.calls("sendMessage")) == 1


def test_a_failure_after_part_of_the_message_went_out_is_unknown(send, conversation, membership, fake_telegram):
    photo = upload(membership, "box.png", PNG, "image/png")
    fake_telegram.script(fakes.server_error(), method="sendMessage")
    message = send(conversation, "z" * 1500, attachment_ids=[photo.pk])
    assert (message.status, message.error_code) == ("unknown", "partial")
    assert "Only part of the message was sent via Telegram" in message.error_reason


# Refusals ------------------------------------------------------------------------------------------


def test_chat_not_found_fails_with_a_sentence(send, conversation, fake_telegram):
    fake_telegram.bot(BOT_TOKEN).chats.clear()
    message = send(conversation)
    assert (message.status, message.error_code, message.error_reason) == (
        "failed", "400", "Failed to send via Telegram: this chat was not found: the contact may never have started the bot.")
    assert conversation.contact.consent("telegram").blocked_at is None


def test_a_blocked_bot_fails_and_blocks_the_contact_on_telegram_only(send, conversation, fake_telegram):
    fake_telegram.block(BOT_TOKEN, CHAT_ID)
    message = send(conversation)
    assert (message.status, message.error_code, message.error_reason) == (
        "failed", "403", "Failed to send via Telegram: the contact has blocked the bot.")
    consent = conversation.contact.consent("telegram")
    assert consent.blocked_at is not None and consent.blocked_reason == message.error_reason
    assert conversation.contact.consent("whatsapp").blocked_at is None
    with pytest.raises(ServiceError, match="blocked Telegram messages"):
        send(conversation, "Again?")


def test_rate_limited_waits_for_retry_after_then_sends(send, conversation, fake_telegram, delayed_deliveries):
    fake_telegram.script(fakes.too_many_requests(42), method="sendMessage")
    before = timezone.now()
    message = send(conversation)
    assert (message.status, message.error_code) == ("pending", "429")
    [(message_id, countdown)] = delayed_deliveries
    assert message_id == message.pk and countdown >= 42
    assert message.error_reason == "Telegram is rate limiting this bot; we will try again shortly."
    assert message.next_attempt_at >= before + timedelta(seconds=42)

    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    sending.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_reason) == ("sent", "", "")
    assert len(fake_telegram.calls("sendMessage")) == 2


def test_a_revoked_token_puts_the_channel_in_error_with_the_reconnect_sentence(send, conversation, fake_telegram,
                                                                               telegram_channel):
    fake_telegram.revoke(BOT_TOKEN)
    message = send(conversation)
    assert (message.status, message.error_code, message.error_reason) == ("failed", "401", telegram.RECONNECT)
    telegram_channel.refresh_from_db()
    assert (telegram_channel.status, telegram_channel.status_reason) == (
        Channel.Status.ERROR, "The Telegram bot token is no longer valid. Please reconnect the bot.")
    with pytest.raises(ServiceError) as refused:
        send(conversation, "Another")
    assert (refused.value.code, refused.value.message) == ("channel_error", telegram.RECONNECT)


def test_telegram_s_server_errors_are_retried(send, conversation, fake_telegram):
    fake_telegram.script(fakes.server_error(), method="sendMessage")
    message = send(conversation)
    assert (message.status, message.error_code) == ("pending", "502")
    assert "temporary problem" in message.error_reason


def test_no_answer_in_time_is_unknown_and_never_resent(send, conversation, fake_telegram, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.5
    fake_telegram.script(fakes.Hang(5), method="sendMessage")
    message = send(conversation)
    assert (message.status, message.error_code) == ("unknown", "timeout")
    assert len(fake_telegram.sent) == 1  # Telegram had it


def test_a_connection_dropped_after_sending_is_unknown(send, conversation, fake_telegram):
    fake_telegram.script(fakes.Drop(taken=True), method="sendMessage")
    message = send(conversation)
    assert (message.status, message.error_code) == ("unknown", "connection_lost")


def test_telegram_unreachable_is_retried(send, conversation, settings):
    from tests.fakes.ports import free_port

    settings.TELEGRAM_API_BASE = f"http://127.0.0.1:{free_port()}"
    message = send(conversation)
    assert (message.status, message.error_code) == ("pending", "connection")
    assert BOT_TOKEN not in message.error_reason


@pytest.mark.parametrize("status, description, effect, kind", [
    (403, "Forbidden: bot was blocked by the user", BLOCKED, "permanent"),
    (400, "Bad Request: chat not found", "", "permanent"),
    (403, "Forbidden: user is deactivated", "", "permanent"),
    (401, "Unauthorized", CONFIGURATION, "permanent"),
    (404, "Not Found", CONFIGURATION, "permanent"),
    (429, "Too Many Requests: retry after 5", RATE_LIMITED, "transient"),
    (500, "Internal Server Error", "", "transient"),
    (400, "Bad Request: something new", "", "permanent"),
])
def test_the_classifier(status, description, effect, kind):
    error = telegram.refusal(telegram.BotApiError(status, description, retry_after=5 if status == 429 else None))
    assert error.effect == effect
    assert isinstance(error, TransientSendError) == (kind == "transient")
    if status == 429:
        assert error.retry_after == 5
    if description == "Bad Request: something new":
        assert error.reason == "Failed to send via Telegram: something new."


# Typing ---------------------------------------------------------------------------------------------


def test_the_agent_typing_shows_in_telegram(conversation, fake_telegram, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert receipts.conversation_typing(conversation=conversation) is True
        # At most one indicator every few seconds.
        assert receipts.conversation_typing(conversation=conversation) is False
    [typing] = fake_telegram.calls("sendChatAction")
    assert (typing.params["chat_id"], typing.params["action"]) == (str(CHAT_ID), "typing")


def test_typing_follows_the_channel_setting_and_a_failure_is_quiet(conversation, telegram_channel, fake_telegram,
                                                                   django_capture_on_commit_callbacks):
    fake_telegram.block(BOT_TOKEN, CHAT_ID)
    assert receipts.conversation_send_typing(conversation=conversation) is False  # 403: logged, not raised
    Channel.objects.filter(pk=telegram_channel.pk).update(settings={"send_typing_indicators": False})
    conversation.channel.refresh_from_db()
    assert receipts.conversation_typing(conversation=conversation) is False
    assert receipts.conversation_opened(conversation=conversation) is None  # no read receipts on Telegram
    assert len(fake_telegram.calls("sendChatAction")) == 1
