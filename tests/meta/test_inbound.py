"""Processing Meta events: echoes, watermarks, WhatsApp statuses, reactions, unsends, media,
contact enrichment and the message kinds Meta sends, through the webhook and the fake Graph API."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.contacts import services as contact_services
from apps.conversations.models import Conversation, Message
from apps.conversations import inbound
from apps.providers.models import InboundEvent
from tests.fakes import meta as fakes
from tests.fixtures.meta import APP_ID, IG_ID, PAGE_ID, WHATSAPP_TOKEN
from tests.meta import webhooks

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("meta_app")]

PSID = "6100000000000002"
IGSID = "17850000000000002"
WA_ID = "60123456789"
META_PAGE_INBOX_APP = "263902037430900"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def deliver(django_capture_on_commit_callbacks):
    def run(body):
        response = webhooks.deliver(django_capture_on_commit_callbacks, body)
        assert response.status_code == 200
        return response

    return run


@pytest.fixture
def messenger_conversation(acme, messenger_channel):
    contact, _ = contact_services.contact_resolve(organization=acme, kind="messenger", address=PSID, name="Ana")
    return Conversation.objects.create(
        organization=acme, contact=contact, channel=messenger_channel, last_inbound_at=timezone.now()
    )


def outbound(conversation, external_id, *, minutes_ago=0.0, status="sent"):
    return Message.objects.create(
        organization_id=conversation.organization_id, conversation=conversation, channel=conversation.channel,
        direction="outbound", text=f"reply {external_id}", external_id=external_id, status=status,
        sender_kind="agent", created_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def echo(text, *, mid, app_id, to=PSID):
    item = fakes.messenger_text(PAGE_ID, to, text, mid=mid, echo=True)
    item["message"]["app_id"] = int(app_id)
    return item


# Echoes -----------------------------------------------------------------------------------


def test_echo_of_our_own_send_is_not_duplicated(fake_meta, deliver, messenger_conversation):
    ours = outbound(messenger_conversation, "m_our_send")
    deliver(webhooks.page(echo("reply m_our_send", mid="m_our_send", app_id=APP_ID), page_id=PAGE_ID))
    # Our app's echo can also arrive before the send's answer was recorded: still nothing new.
    deliver(webhooks.page(echo("in flight", mid="m_in_flight", app_id=APP_ID), page_id=PAGE_ID))

    assert list(Message.objects.values_list("pk", flat=True)) == [ours.pk]
    assert set(InboundEvent.objects.values_list("state", flat=True)) == {"processed"}


def test_echo_of_a_mid_we_recorded_is_not_duplicated_whatever_the_app(fake_meta, deliver, messenger_conversation):
    outbound(messenger_conversation, "m_known")
    deliver(webhooks.page(echo("reply m_known", mid="m_known", app_id=META_PAGE_INBOX_APP), page_id=PAGE_ID))
    assert Message.objects.count() == 1


def test_echo_from_metas_own_apps_is_shown_as_outbound(fake_meta, deliver, messenger_conversation, alice_client):
    deliver(webhooks.page(echo("Answered from the Page inbox", mid="m_page_app", app_id=META_PAGE_INBOX_APP),
                          page_id=PAGE_ID))

    message = Message.objects.get(external_id="m_page_app")
    assert (message.direction, message.sender_kind, message.sender, message.status) == ("outbound", "agent", None, "sent")
    assert message.conversation == messenger_conversation
    messenger_conversation.refresh_from_db()
    assert messenger_conversation.last_message_preview == "Answered from the Page inbox"
    page = alice_client.get(f"/conversations/{messenger_conversation.pk}/").content.decode()
    assert "Answered from the Page inbox" in page

    # Meta retries it: still one.
    deliver(webhooks.page(echo("Answered from the Page inbox", mid="m_page_app", app_id=META_PAGE_INBOX_APP),
                          page_id=PAGE_ID))
    assert Message.objects.filter(external_id="m_page_app").count() == 1


# Watermarks -------------------------------------------------------------------------------


def test_delivery_and_read_watermarks_mark_earlier_outbound_messages_only(
    fake_meta, deliver, messenger_conversation
):
    first = outbound(messenger_conversation, "m_1", minutes_ago=3)
    second = outbound(messenger_conversation, "m_2", minutes_ago=2)
    later = outbound(messenger_conversation, "m_3", minutes_ago=0)
    pending = outbound(messenger_conversation, "m_pending", minutes_ago=2.5, status="pending")
    watermark = int((timezone.now() - timedelta(minutes=1)).timestamp() * 1000)

    deliver(webhooks.page(fakes.messenger_watermark(PAGE_ID, PSID, "delivery", watermark), page_id=PAGE_ID))
    statuses = dict(Message.objects.values_list("external_id", "status"))
    assert statuses == {"m_1": "delivered", "m_2": "delivered", "m_3": "sent", "m_pending": "pending"}

    read_mark = int((timezone.now() - timedelta(minutes=2, seconds=30)).timestamp() * 1000)
    deliver(webhooks.page(fakes.messenger_watermark(PAGE_ID, PSID, "read", read_mark), page_id=PAGE_ID))
    statuses = dict(Message.objects.values_list("external_id", "status"))
    assert statuses == {"m_1": "read", "m_2": "delivered", "m_3": "sent", "m_pending": "pending"}

    # An older delivery watermark arriving late never moves a read message back.
    deliver(webhooks.page(fakes.messenger_watermark(PAGE_ID, PSID, "delivery", watermark - 1), page_id=PAGE_ID))
    for message, status in ((first, "read"), (second, "delivered"), (later, "sent"), (pending, "pending")):
        message.refresh_from_db()
        assert message.status == status


def test_watermark_of_another_customer_touches_nothing(fake_meta, deliver, messenger_conversation):
    outbound(messenger_conversation, "m_1", minutes_ago=3)
    watermark = int(time.time() * 1000)
    deliver(webhooks.page(fakes.messenger_watermark(PAGE_ID, "6199999999999999", "read", watermark), page_id=PAGE_ID))
    assert Message.objects.get().status == "sent"
    assert InboundEvent.objects.get().state == "processed"


def test_instagram_read_names_a_message(fake_meta, deliver, acme, instagram_channel):
    contact, _ = contact_services.contact_resolve(organization=acme, kind="instagram", address=IGSID)
    conversation = Conversation.objects.create(organization=acme, contact=contact, channel=instagram_channel)
    outbound(conversation, "ig_m_1", minutes_ago=3)
    outbound(conversation, "ig_m_2", minutes_ago=2)
    outbound(conversation, "ig_m_3", minutes_ago=1)
    item = {"sender": {"id": IGSID}, "recipient": {"id": IG_ID}, "timestamp": int(time.time() * 1000),
            "read": {"mid": "ig_m_2"}}
    deliver(webhooks.instagram(item, ig_id=IG_ID))
    assert dict(Message.objects.values_list("external_id", "status")) == {
        "ig_m_1": "read", "ig_m_2": "read", "ig_m_3": "sent"
    }


# WhatsApp Cloud statuses --------------------------------------------------------------------


@pytest.fixture
def whatsapp_conversation(acme, meta_whatsapp_channel):
    contact, _ = contact_services.contact_resolve(
        organization=acme, kind="whatsapp", address="+60123456789", phone="+60123456789"
    )
    return Conversation.objects.create(organization=acme, contact=contact, channel=meta_whatsapp_channel)


def test_whatsapp_statuses_out_of_order_end_at_the_highest(fake_meta, deliver, whatsapp_conversation):
    message = outbound(whatsapp_conversation, "wamid.OUT")
    deliver(webhooks.whatsapp(statuses=[
        fakes.whatsapp_status("wamid.OUT", "read", WA_ID),
        fakes.whatsapp_status("wamid.OUT", "delivered", WA_ID),
        fakes.whatsapp_status("wamid.OUT", "sent", WA_ID),
    ]))
    message.refresh_from_db()
    assert message.status == "read"
    assert message.read_at is not None
    assert InboundEvent.objects.filter(kind="status").count() == 3


def test_whatsapp_status_before_its_message_is_known_waits_for_it(fake_meta, deliver, whatsapp_conversation):
    deliver(webhooks.whatsapp(statuses=[fakes.whatsapp_status("wamid.LATER", "delivered", WA_ID)]))
    event = InboundEvent.objects.get()
    assert (event.state, event.ref) == ("deferred", "wamid.LATER")

    message = outbound(whatsapp_conversation, "wamid.LATER")
    assert event.pk in inbound.event_ids_due()
    inbound.event_process(event.pk)
    message.refresh_from_db()
    assert message.status == "delivered"


def test_whatsapp_failed_status_keeps_the_reason(fake_meta, deliver, whatsapp_conversation):
    message = outbound(whatsapp_conversation, "wamid.FAIL")
    error = {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
             "error_data": {"details": "Message Undeliverable."}}
    deliver(webhooks.whatsapp(statuses=[fakes.whatsapp_status("wamid.FAIL", "failed", WA_ID, errors=[error])]))
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", "131026")
    assert message.error_reason == "Failed to send via WhatsApp: this person isn't available right now."


# Reactions and unsends --------------------------------------------------------------------


def reaction(mid, action, emoji="❤", name="love", sender=PSID, at=None):
    return {"sender": {"id": sender}, "recipient": {"id": PAGE_ID}, "timestamp": at or int(time.time() * 1000),
            "reaction": {"mid": mid, "action": action, "reaction": name, "emoji": emoji}}


def test_reactions_and_unsends_are_recorded_and_shown(fake_meta, deliver, messenger_channel, alice_client):
    deliver(webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "Is it in stock?", mid="m_q"), page_id=PAGE_ID))
    deliver(webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "oops wrong chat", mid="m_oops"), page_id=PAGE_ID))
    ours = outbound(Message.objects.get(external_id="m_q").conversation, "m_answer")

    deliver(webhooks.page(reaction("m_answer", "react", at=1), page_id=PAGE_ID))
    ours.refresh_from_db()
    assert [(r["emoji"], r["by"]) for r in ours.reactions] == [("❤", "contact")]

    deliver(webhooks.page(reaction("m_answer", "react", at=1), page_id=PAGE_ID))  # Meta's retry
    deliver(webhooks.page(reaction("m_answer", "react", emoji="👍", name="like", at=2), page_id=PAGE_ID))
    ours.refresh_from_db()
    assert [r["emoji"] for r in ours.reactions] == ["👍"]  # one reaction per person, the latest

    unsend = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": int(time.time() * 1000),
              "message": {"mid": "m_oops", "is_deleted": True}}
    deliver(webhooks.page(unsend, page_id=PAGE_ID))
    unsent = Message.objects.get(external_id="m_oops")
    assert unsent.deleted_at is not None

    page = alice_client.get(f"/conversations/{unsent.conversation_id}/").content.decode()
    assert "This message was unsent" in page
    assert "oops wrong chat" not in page
    assert 'class="reaction-chip"' in page and "👍" in page

    deliver(webhooks.page(reaction("m_answer", "unreact", emoji="", name="", at=3), page_id=PAGE_ID))
    ours.refresh_from_db()
    assert ours.reactions == []


def test_reaction_to_a_message_we_never_had_is_processed_quietly(fake_meta, deliver, messenger_channel):
    deliver(webhooks.page(reaction("m_ancient", "react"), page_id=PAGE_ID))
    assert InboundEvent.objects.get().state == "processed"


def test_whatsapp_reaction_is_recorded_on_the_message(fake_meta, deliver, whatsapp_conversation):
    ours = outbound(whatsapp_conversation, "wamid.OURS")
    item = {"from": WA_ID, "id": "wamid.REACT", "timestamp": str(int(time.time())), "type": "reaction",
            "reaction": {"message_id": "wamid.OURS", "emoji": "😀"}}
    deliver(webhooks.whatsapp(messages=[item]))
    ours.refresh_from_db()
    assert [r["emoji"] for r in ours.reactions] == ["😀"]
    assert Message.objects.count() == 1


# Media ------------------------------------------------------------------------------------


def test_attachment_from_metas_cdn_is_stored(fake_meta, deliver, messenger_channel):
    url = fake_meta.add_cdn_media(PNG, "image/png", name="photo.png")
    deliver(webhooks.page(fakes.messenger_attachment(PAGE_ID, PSID, "image", url, mid="m_img"), page_id=PAGE_ID))

    message = Message.objects.get(external_id="m_img")
    attachment = message.attachments.get()
    assert (message.type, attachment.content_type, attachment.size) == ("image", "image/png", len(PNG))
    assert attachment.file.read() == PNG


def test_attachment_from_another_host_is_refused(fake_meta, deliver, messenger_channel):
    url = fake_meta.add_cdn_media(PNG, "image/png").replace("127.0.0.1", "localhost")
    deliver(webhooks.page(fakes.messenger_attachment(PAGE_ID, PSID, "image", url, mid="m_elsewhere"), page_id=PAGE_ID))

    message = Message.objects.get(external_id="m_elsewhere")
    assert not message.attachments.exists()
    assert message.text == inbound.MEDIA_NOT_DOWNLOADED
    assert not [r for r in fake_meta.requests if r.path.startswith("/cdn/")]


def test_whatsapp_media_is_fetched_with_the_token(fake_meta, deliver, meta_whatsapp_channel):
    media_id = fake_meta.add_whatsapp_media(b"%PDF-1.4 invoice", "application/pdf", WHATSAPP_TOKEN)
    item = {"from": WA_ID, "id": "wamid.DOC", "timestamp": str(int(time.time())), "type": "document",
            "document": {"id": media_id, "mime_type": "application/pdf", "filename": "invoice.pdf",
                         "caption": "My invoice"}}
    deliver(webhooks.whatsapp(messages=[item], contacts=[fakes.whatsapp_contact(WA_ID, "Siti")]))

    message = Message.objects.get(external_id="wamid.DOC")
    assert (message.type, message.text) == ("document", "My invoice")
    attachment = message.attachments.get()
    assert (attachment.content_type, attachment.file.read()) == ("application/pdf", b"%PDF-1.4 invoice")


# Contacts ---------------------------------------------------------------------------------


def test_new_sender_is_enriched_once_from_the_graph(fake_meta, deliver, messenger_channel):
    fake_meta.add_profile(PSID, first_name="Ana", last_name="Silva", profile_pic="https://scontent.xx.fbcdn.net/p.jpg")
    deliver(webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "hello", mid="m_a"), page_id=PAGE_ID))
    deliver(webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "again", mid="m_b"), page_id=PAGE_ID))

    contact = Message.objects.get(external_id="m_a").conversation.contact
    assert (contact.name, contact.avatar_url) == ("Ana Silva", "https://scontent.xx.fbcdn.net/p.jpg")
    profile_requests = fake_meta.requests_to("profile")
    assert len(profile_requests) == 1
    assert profile_requests[0].path.endswith(f"/{PSID}")


def test_failed_enrichment_leaves_the_contact_usable(fake_meta, deliver, messenger_channel):
    fake_meta.script(fakes.server_error(), endpoint="profile")
    deliver(webhooks.page(fakes.messenger_text(PAGE_ID, PSID, "hello", mid="m_a"), page_id=PAGE_ID))

    message = Message.objects.get(external_id="m_a")
    assert message.conversation.contact.name == ""
    assert message.conversation.contact.display_name == "User"
    assert InboundEvent.objects.get().state == "processed"
    assert len(fake_meta.requests_to("profile")) == 1


def test_instagram_sender_is_enriched_with_name_or_username(fake_meta, deliver, instagram_channel):
    fake_meta.add_profile(IGSID, username="ana.s", profile_pic="https://scontent.cdninstagram.com/a.jpg")
    deliver(webhooks.instagram(fakes.messenger_text(IG_ID, IGSID, "hi", mid="ig_a"), ig_id=IG_ID))
    assert Message.objects.get().conversation.contact.name == "@ana.s"


# Message kinds ----------------------------------------------------------------------------


def test_quick_reply_postback_story_reply_and_mention_read_as_text(fake_meta, deliver, instagram_channel,
                                                                   messenger_channel):
    quick = fakes.messenger_text(PAGE_ID, PSID, "Yes please", mid="m_quick", quick_reply="CONFIRM")
    postback = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": int(time.time() * 1000),
                "postback": {"title": "Talk to a person", "payload": "HUMAN", "mid": "m_postback"}}
    deliver(webhooks.page(quick, postback, page_id=PAGE_ID))
    story_reply = fakes.messenger_text(IG_ID, IGSID, "Love this!", mid="ig_story")
    story_reply["message"]["reply_to"] = {"story": {"url": "https://lookaside.fbsbx.com/story/1", "id": "1"}}
    mention = {"sender": {"id": IGSID}, "recipient": {"id": IG_ID}, "timestamp": int(time.time() * 1000),
               "message": {"mid": "ig_mention", "attachments": [
                   {"type": "story_mention", "payload": {"url": "https://lookaside.fbsbx.com/story/2"}}]}}
    deliver(webhooks.instagram(story_reply, mention, ig_id=IG_ID))

    texts = dict(Message.objects.values_list("external_id", "text"))
    assert texts["m_quick"] == "Yes please"
    assert texts["m_postback"] == "Talk to a person"
    assert texts["ig_story"] == "Love this!\n\n↩ Replied to your story: https://lookaside.fbsbx.com/story/1"
    assert texts["ig_mention"] == "Mentioned you in their story: https://lookaside.fbsbx.com/story/2"


def test_whatsapp_location_and_interactive_replies(fake_meta, deliver, meta_whatsapp_channel):
    now = str(int(time.time()))
    location = {"from": WA_ID, "id": "wamid.LOC", "timestamp": now, "type": "location",
                "location": {"latitude": 3.139, "longitude": 101.6869, "name": "KLCC"}}
    button = {"from": WA_ID, "id": "wamid.BTN", "timestamp": now, "type": "interactive",
              "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes, book it"}}}
    listed = {"from": WA_ID, "id": "wamid.LIST", "timestamp": now, "type": "interactive",
              "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Tuesday 10:00"}}}
    template_button = {"from": WA_ID, "id": "wamid.TBTN", "timestamp": now, "type": "button",
                       "button": {"payload": "STOP_PROMO", "text": "Stop promotions"}}
    deliver(webhooks.whatsapp(messages=[location, button, listed, template_button]))

    messages = {m.external_id: m for m in Message.objects.all()}
    assert messages["wamid.LOC"].type == "location"
    assert messages["wamid.LOC"].location == {"latitude": 3.139, "longitude": 101.6869, "label": "KLCC"}
    assert messages["wamid.BTN"].text == "Yes, book it"
    assert messages["wamid.LIST"].text == "Tuesday 10:00"
    assert messages["wamid.TBTN"].text == "Stop promotions"
    assert len({m.conversation_id for m in messages.values()}) == 1
