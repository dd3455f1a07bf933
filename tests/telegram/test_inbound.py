"""What a private chat sends: text and captions, photos (the largest size), documents, audio,
voice, video, video notes, stickers, locations, contacts (media through getFile, within the Bot
API's 20 MB), /start with its deep-link payload, edits, button taps (answered), and the bot
blocked and unblocked."""

import pytest
from django.urls import reverse

from apps.accounts.models import Membership
from apps.contacts.models import Contact
from apps.conversations import sending
from apps.conversations.models import Message
from apps.core.errors import ServiceError
from apps.providers.models import InboundEvent
from tests import factories
from tests.fixtures.telegram import BOT_TOKEN
from tests.telegram.conftest import deliver, payload

pytestmark = pytest.mark.django_db

JPEG = b"\xff\xd8\xff\xe0" + b"j" * 500
PDF = b"%PDF-1.7\n" + b"p" * 300


def receive(capture, channel, name: str, **changes) -> Message:
    body = payload(name)
    deliver(capture, channel, body)
    return Message.objects.select_related("conversation__contact").prefetch_related("attachments").order_by("-pk").first()


def test_a_photo_comes_in_its_largest_size_with_its_caption(telegram_channel, fake_telegram,
                                                           django_capture_on_commit_callbacks):
    fake_telegram.add_file(BOT_TOKEN, JPEG, "photos/file_12.jpg", file_id="AgACAgQAAxkBAAIBS2large")
    message = receive(django_capture_on_commit_callbacks, telegram_channel, "photo")
    assert (message.type, message.text) == ("image", "The box arrived damaged")
    [attachment] = message.attachments.all()
    assert (attachment.content_type, attachment.size, attachment.file.read()) == ("image/jpeg", len(JPEG), JPEG)
    assert attachment.filename == "file_12.jpg" or attachment.filename.endswith(".jpg")
    [get_file] = fake_telegram.calls("getFile")
    assert get_file.params["file_id"] == "AgACAgQAAxkBAAIBS2large"
    assert [r.path for r in fake_telegram.requests if not r.api_method] == [f"/file/bot{BOT_TOKEN}/photos/file_12.jpg"]


def test_a_document_keeps_its_file_name_and_caption(telegram_channel, fake_telegram, django_capture_on_commit_callbacks):
    fake_telegram.add_file(BOT_TOKEN, PDF, "documents/file_3.pdf", file_id="BQACAgQAAxkBAAIBTGdoc")
    message = receive(django_capture_on_commit_callbacks, telegram_channel, "document")
    assert (message.type, message.text) == ("document", "Here is the invoice")
    [attachment] = message.attachments.all()
    assert (attachment.filename, attachment.content_type, attachment.file.read()) == (
        "invoice-2291.pdf", "application/pdf", PDF)


@pytest.mark.parametrize("name, file_id, message_type, content_type", [
    ("audio", "CQACAgQAAxkBAAIBTWaudio", "audio", "audio/mpeg"),
    ("voice", "AwACAgQAAxkBAAIBTnvoice", "audio", "audio/ogg"),
    ("video", "BAACAgQAAxkBAAIBT2video", "video", "video/mp4"),
    ("video_note", "DQACAgQAAxkBAAIBUGnote", "video", "video/mp4"),
    ("sticker", "CAACAgIAAxkBAAIBUWsticker", "image", "image/webp"),
])
def test_audio_voice_video_video_notes_and_stickers_are_downloaded(telegram_channel, fake_telegram, name, file_id,
                                                                   message_type, content_type,
                                                                   django_capture_on_commit_callbacks):
    fake_telegram.add_file(BOT_TOKEN, b"media-bytes", f"{name}/file_1.bin", file_id=file_id)
    message = receive(django_capture_on_commit_callbacks, telegram_channel, name)
    assert message.type == message_type
    [attachment] = message.attachments.all()
    assert (attachment.content_type, attachment.file.read()) == (content_type, b"media-bytes")
    if name == "sticker":
        assert message.text == "👍"
    if name == "audio":
        assert attachment.filename == "jingle.mp3"


def test_a_file_over_the_bot_api_download_limit_keeps_the_message_with_a_note(telegram_channel, fake_telegram,
                                                                              django_capture_on_commit_callbacks):
    fake_telegram.add_file(BOT_TOKEN, b"x", "videos/big.mp4", file_id="BAACAgQAAxkBAAIBT2video", size=25 * 1024 * 1024)
    message = receive(django_capture_on_commit_callbacks, telegram_channel, "video")
    assert message.text == "[attachment could not be downloaded]"
    assert not message.attachments.exists()
    assert InboundEvent.objects.get().state == "processed"


def test_a_file_telegram_no_longer_has_keeps_the_message(telegram_channel, fake_telegram,
                                                         django_capture_on_commit_callbacks):
    message = receive(django_capture_on_commit_callbacks, telegram_channel, "document")
    assert message.text == "Here is the invoice\n\n[attachment could not be downloaded]"


def test_locations_venues_and_contacts(telegram_channel, django_capture_on_commit_callbacks):
    location = receive(django_capture_on_commit_callbacks, telegram_channel, "location")
    assert (location.type, location.location) == ("location", {"latitude": 5.414131, "longitude": 100.328759, "label": ""})
    venue = receive(django_capture_on_commit_callbacks, telegram_channel, "venue")
    assert venue.location["label"] == "Penang Times Square, 77 Jalan Dato Keramat"
    contact = receive(django_capture_on_commit_callbacks, telegram_channel, "contact")
    assert (contact.type, contact.text) == ("text", "Shared contact: Siti Rahman +60123456789")


def test_start_with_a_deep_link_creates_the_contact_and_keeps_the_payload(telegram_channel, alice_client,
                                                                          django_capture_on_commit_callbacks):
    message = receive(django_capture_on_commit_callbacks, telegram_channel, "start_deep_link")
    contact = message.conversation.contact
    assert message.text == "/start spring-sale-42"
    assert contact.custom_attributes == {"telegram_username": "@anasilva", "telegram_deep_link": "spring-sale-42"}
    assert contact.identities.get().address == "5550001"
    panel = alice_client.get(reverse("inbox:conversation", args=[message.conversation_id])).content.decode()
    assert "<dt>Telegram deep link</dt><dd><span class=\"break\">spring-sale-42</span></dd>" in panel
    # A later message keeps the payload; an attribute an agent set stays too.
    Contact.objects.filter(pk=contact.pk).update(custom_attributes={**contact.custom_attributes, "tier": "gold"})
    receive(django_capture_on_commit_callbacks, telegram_channel, "text")
    contact.refresh_from_db()
    assert contact.custom_attributes == {"telegram_username": "@anasilva", "telegram_deep_link": "spring-sale-42",
                                         "tier": "gold"}


def test_a_plain_message_from_a_known_contact_writes_nothing_to_the_contact(telegram_channel,
                                                                            django_capture_on_commit_callbacks,
                                                                            django_assert_max_num_queries):
    receive(django_capture_on_commit_callbacks, telegram_channel, "text")
    body = payload("text")
    body["message"]["message_id"] = 99
    with django_assert_max_num_queries(19) as queries:  # recording, processing and the live frame
        deliver(django_capture_on_commit_callbacks, telegram_channel, body)
    assert not [q for q in queries.captured_queries if 'UPDATE "contacts_contact"' in q["sql"]]
    assert Message.objects.count() == 2


# Edits --------------------------------------------------------------------------------------------


def test_an_edit_updates_the_text_marks_it_edited_and_the_preview_follows(telegram_channel, alice_client,
                                                                          django_capture_on_commit_callbacks):
    original = receive(django_capture_on_commit_callbacks, telegram_channel, "text")
    edit = payload("edited_message")
    deliver(django_capture_on_commit_callbacks, telegram_channel, edit)
    original.refresh_from_db()
    assert original.text == "Hi, do you ship to Penang and Langkawi?"
    assert original.edited_at.timestamp() == 1764633720
    assert Message.objects.count() == 1
    assert original.conversation.__class__.objects.get(pk=original.conversation_id).last_message_preview == (
        "Hi, do you ship to Penang and Langkawi?")
    page = alice_client.get(reverse("inbox:conversation", args=[original.conversation_id])).content.decode()
    assert "Penang and Langkawi" in page and 'class="bubble-edited"' in page

    # An older edit arriving late does not win.
    late = payload("edited_message")
    late["edited_message"]["text"] = "an older version"
    late["edited_message"]["edit_date"] = 1764633700
    deliver(django_capture_on_commit_callbacks, telegram_channel, late)
    original.refresh_from_db()
    assert original.text == "Hi, do you ship to Penang and Langkawi?"


def test_an_edit_of_a_message_we_never_saw_changes_nothing(telegram_channel, django_capture_on_commit_callbacks):
    deliver(django_capture_on_commit_callbacks, telegram_channel, payload("edited_message"))
    assert not Message.objects.exists()
    assert InboundEvent.objects.get().state == "processed"


def test_an_edit_is_redrawn_live_as_a_whole_bubble(telegram_channel, django_capture_on_commit_callbacks, monkeypatch):
    from apps.inbox import broadcast, live

    original = receive(django_capture_on_commit_callbacks, telegram_channel, "text")
    frames = []
    monkeypatch.setattr(broadcast, "_send", lambda org, event_type, channel_id, *, ids, render: frames.append(
        (event_type, render(live))))
    deliver(django_capture_on_commit_callbacks, telegram_channel, payload("edited_message"))
    [status] = [fragments for event_type, fragments in frames if event_type == "inbox.message_status_changed"]
    bubble = status["fragments"]["status"]
    assert bubble.startswith(f'<div id="message-{original.pk}"') and 'hx-swap-oob="outerHTML"' in bubble
    assert "Penang and Langkawi" in bubble and "edited" in bubble
    # The nested status is not out of band itself (htmx would swap it on its own).
    assert bubble.count("hx-swap-oob") == 1


# Button taps ------------------------------------------------------------------------------------------


def test_a_button_tap_is_the_customer_s_reply_and_is_answered(telegram_channel, fake_telegram,
                                                              django_capture_on_commit_callbacks):
    receive(django_capture_on_commit_callbacks, telegram_channel, "text")
    body = payload("callback_query")
    fake_telegram.bot(BOT_TOKEN).callback_queries.add(body["callback_query"]["id"])
    deliver(django_capture_on_commit_callbacks, telegram_channel, body)
    reply = Message.objects.order_by("-pk").first()
    assert (reply.direction, reply.text, reply.external_id) == ("inbound", "Yes, please", "callback:4382bfdwdsb323b2d9")
    assert reply.conversation.messages.count() == 2  # the same conversation
    assert fake_telegram.answered(BOT_TOKEN) == ["4382bfdwdsb323b2d9"]

    # Telegram retrying the update, or a replay, neither records nor answers it again.
    deliver(django_capture_on_commit_callbacks, telegram_channel, body)
    from apps.conversations import inbound

    inbound.event_process(InboundEvent.objects.get(kind="callback").pk)
    assert Message.objects.count() == 2 and fake_telegram.answered(BOT_TOKEN) == ["4382bfdwdsb323b2d9"]


def test_a_button_label_is_found_by_its_data_and_falls_back_to_the_data(telegram_channel, fake_telegram,
                                                                        django_capture_on_commit_callbacks):
    body = payload("callback_query")
    body["callback_query"]["data"] = "No, a refund"
    deliver(django_capture_on_commit_callbacks, telegram_channel, body)
    body = payload("callback_query")
    body["callback_query"]["id"] = "other-query"
    body["callback_query"]["message"] = {"message_id": 1, "chat": {"id": 5550001, "type": "private"}, "date": 0}
    body["callback_query"]["data"] = "Track my order"
    deliver(django_capture_on_commit_callbacks, telegram_channel, body)
    assert list(Message.objects.order_by("pk").values_list("text", flat=True)) == ["No, a refund", "Track my order"]


def test_an_answer_telegram_refuses_leaves_the_tap_recorded(telegram_channel, fake_telegram, caplog,
                                                            django_capture_on_commit_callbacks):
    # The query id is unknown to the fake: "query is too old and response timeout expired".
    deliver(django_capture_on_commit_callbacks, telegram_channel, payload("callback_query"))
    assert Message.objects.get().text == "Yes, please"
    assert InboundEvent.objects.get().state == "processed"
    assert fake_telegram.calls("answerCallbackQuery") and BOT_TOKEN not in caplog.text


# Blocking the bot ---------------------------------------------------------------------------------


def test_blocking_the_bot_blocks_telegram_only_and_unblocking_lets_us_write_again(
        telegram_channel, acme, alice, django_capture_on_commit_callbacks):
    first = receive(django_capture_on_commit_callbacks, telegram_channel, "text")
    contact = first.conversation.contact
    whatsapp_consent_before = contact.consent("whatsapp").blocked_at

    deliver(django_capture_on_commit_callbacks, telegram_channel, payload("my_chat_member_kicked"))
    consent = contact.consent("telegram")
    assert consent.blocked_at is not None and consent.blocked_reason == "The contact blocked the bot in Telegram."
    assert contact.consent("whatsapp").blocked_at == whatsapp_consent_before
    membership = Membership.objects.get(user=alice, organization=acme)
    with pytest.raises(ServiceError) as refused:
        sending.message_send(membership=membership, conversation=first.conversation, text="Still there?")
    assert (refused.value.code, refused.value.message) == ("blocked", "This contact has blocked Telegram messages from you.")

    deliver(django_capture_on_commit_callbacks, telegram_channel, payload("my_chat_member_member"))
    assert contact.consent("telegram").blocked_at is None
    assert not Message.objects.exclude(pk=first.pk).exists()  # membership changes are not messages


def test_a_stranger_blocking_the_bot_creates_no_contact(telegram_channel, django_capture_on_commit_callbacks):
    deliver(django_capture_on_commit_callbacks, telegram_channel, payload("my_chat_member_kicked"))
    assert not Contact.objects.exists() and InboundEvent.objects.get().state == "processed"


def test_a_contact_known_on_another_channel_is_found_by_their_telegram_chat(telegram_channel, acme,
                                                                           django_capture_on_commit_callbacks):
    known = factories.ContactFactory(organization=acme, name="Ana (VIP)")
    known.identities.create(organization=acme, kind="telegram", address="5550001")
    message = receive(django_capture_on_commit_callbacks, telegram_channel, "text")
    assert message.conversation.contact == known
