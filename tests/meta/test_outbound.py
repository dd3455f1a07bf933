"""Sending on Meta channels through message_send and the delivery task, against the fake Graph API:
the 24-hour / 7-day windows, text limits, WhatsApp Cloud requests, and Graph errors."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from apps.accounts.models import Membership
from apps.contacts import services as contact_services
from apps.conversations import attachments, sending
from apps.conversations.models import Conversation, Message
from apps.core.errors import ServiceError
from apps.message_templates.models import MessageTemplate
from apps.providers.kinds.meta import adapter as meta
from apps.providers.kinds.meta.connect import TOKEN_PROBLEM_REASON
from apps.providers.kinds.meta.graph import GraphError
from apps.providers.models import Channel
from tests.factories import policy_for
from tests.fakes import meta as fakes
from tests.fixtures.meta import PAGE_ID, PHONE_NUMBER_ID, WHATSAPP_TOKEN

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("meta_app", "fake_meta")]

PSID = "6100000000000003"
IGSID = "17850000000000003"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
HUMAN_AGENT_CLOSED = "Failed to send via Messenger: the 7-day window for human agent replies has closed."
RECONNECT = (
    "Failed to send via Messenger: the Facebook Page connection has expired or lost a permission. "
    "An admin must reconnect the page in Settings → Integrations."
)


@pytest.fixture
def membership(alice, acme):
    return Membership.objects.get(user=alice, organization=acme)


def conversation_on(channel, *, kind, address, hours_ago, phone=""):
    contact, _ = contact_services.contact_resolve(
        organization=channel.organization, kind=kind, address=address, phone=phone
    )
    return Conversation.objects.create(
        organization=channel.organization, contact=contact, channel=channel,
        last_inbound_at=timezone.now() - timedelta(hours=hours_ago),
    )


@pytest.fixture
def send(membership, django_capture_on_commit_callbacks):
    def run(conversation, text="Hello from Acme", **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            message = sending.message_send(membership=membership, conversation=conversation, text=text, **kwargs)
        message.refresh_from_db()
        return message

    return run


def send_requests(fake, endpoint="send"):
    return [r for r in fake.requests_to(endpoint) if r.json and "sender_action" not in r.json]


# Messenger windows ----------------------------------------------------------------------------


def test_inside_24_hours_messenger_replies_with_messaging_type_response(send, fake_meta, messenger_channel):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=2)
    message = send(conversation, "We ship tomorrow")

    [request] = send_requests(fake_meta)
    assert request.path == f"/v21.0/{PAGE_ID}/messages"
    assert request.json == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "We ship tomorrow"}}
    assert request.headers["Authorization"].startswith("Bearer ")
    assert (message.status, message.external_id) == ("sent", fake_meta.sent[0]["response"]["message_id"])


def test_between_24_hours_and_7_days_messenger_sends_with_the_human_agent_tag(
    send, fake_meta, messenger_channel, alice_client
):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=72)
    state = policy_for("messenger").window(conversation.last_inbound_at)
    assert (state.open, state.tag) == (True, "HUMAN_AGENT")

    message = send(conversation, "Sorry for the wait")
    [request] = send_requests(fake_meta)
    assert request.json["messaging_type"] == "MESSAGE_TAG"
    assert request.json["tag"] == "HUMAN_AGENT"
    assert message.status == "sent"

    page = alice_client.get(f"/conversations/{conversation.pk}/").content.decode()
    assert "human agent replies" in page
    assert "is-tagged" in page


def test_after_7_days_messenger_refuses_with_the_sentence(send, fake_meta, messenger_channel, membership):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=24 * 8)
    with pytest.raises(ServiceError) as refused:
        sending.message_send(membership=membership, conversation=conversation, text="Hello?")
    assert (refused.value.code, refused.value.message) == ("outside_window", HUMAN_AGENT_CLOSED)
    assert not Message.objects.exists()
    assert not fake_meta.requests_to("send")


def test_meta_saying_the_window_closed_fails_the_message_with_the_sentence(send, fake_meta, messenger_channel):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=24 * 6)
    fake_meta.script(fakes.outside_window(), endpoint="send")
    message = send(conversation)
    assert (message.status, message.error_reason) == ("failed", HUMAN_AGENT_CLOSED)


def test_messenger_attachments_go_one_per_request_by_url_then_the_text(
    send, fake_meta, messenger_channel, membership
):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=1)
    photo = attachments.attachment_upload(
        membership=membership, uploaded_file=SimpleUploadedFile("box.png", PNG, content_type="image/png"),
        policy=policy_for("messenger"),
    )
    message = send(conversation, "Here it is", attachment_ids=[photo.pk])

    first, second = send_requests(fake_meta)
    attachment = first.json["message"]["attachment"]
    assert attachment["type"] == "image"
    assert attachment["payload"]["is_reusable"] is True
    assert attachment["payload"]["url"].startswith("https://parley.test/")
    assert second.json["message"] == {"text": "Here it is"}
    assert message.external_id == fake_meta.sent[1]["response"]["message_id"]


# Instagram ------------------------------------------------------------------------------------


def test_instagram_text_over_1000_characters_is_refused(send, fake_meta, instagram_channel, membership):
    conversation = conversation_on(instagram_channel, kind="instagram", address=IGSID, hours_ago=1)
    with pytest.raises(ServiceError) as refused:
        sending.message_send(membership=membership, conversation=conversation, text="x" * 1001)
    assert refused.value.message == "Messages on Instagram can be at most 1000 characters."

    message = send(conversation, "x" * 1000)
    assert message.status == "sent"
    [request] = send_requests(fake_meta)
    assert request.json["recipient"] == {"id": IGSID}


# WhatsApp Cloud -------------------------------------------------------------------------------


def test_whatsapp_cloud_text_is_posted_to_the_phone_number(send, fake_meta, meta_whatsapp_channel):
    conversation = conversation_on(
        meta_whatsapp_channel, kind="whatsapp", address="+60123456789", phone="+60123456789", hours_ago=1
    )
    message = send(conversation, "Your order is on its way")

    [request] = fake_meta.requests_to("whatsapp")
    assert request.path == f"/v21.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["Authorization"] == f"Bearer {WHATSAPP_TOKEN}"
    assert request.json == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "60123456789",
        "type": "text", "text": {"preview_url": False, "body": "Your order is on its way"},
    }
    assert message.external_id.startswith("wamid.")
    assert message.status == "sent"


def test_whatsapp_cloud_media_by_link_with_the_text_as_caption(send, fake_meta, meta_whatsapp_channel, membership):
    conversation = conversation_on(
        meta_whatsapp_channel, kind="whatsapp", address="+60123456789", phone="+60123456789", hours_ago=1
    )
    invoice = attachments.attachment_upload(
        membership=membership,
        uploaded_file=SimpleUploadedFile("invoice.pdf", b"%PDF-1.4 x", content_type="application/pdf"),
        policy=policy_for("meta_whatsapp"),
    )
    send(conversation, "Your invoice", attachment_ids=[invoice.pk])

    [request] = fake_meta.requests_to("whatsapp")
    assert request.json["type"] == "document"
    document = request.json["document"]
    assert document["link"].startswith("https://parley.test/")
    assert (document["filename"], document["caption"]) == ("invoice.pdf", "Your invoice")


def test_whatsapp_cloud_template_outside_the_window(send, fake_meta, meta_whatsapp_channel, acme):
    conversation = conversation_on(
        meta_whatsapp_channel, kind="whatsapp", address="+60123456789", phone="+60123456789", hours_ago=48
    )
    template = MessageTemplate.objects.create(
        organization=acme, name="Order shipped", body="Hi {{1}}, order {{2}} has shipped.",
        provider_template_id="order_shipped", language="en_US",
    )
    message = send(conversation, "", template_id=template.pk, template_variables={"1": "Siti", "2": "A-17"})

    [request] = fake_meta.requests_to("whatsapp")
    assert request.json["type"] == "template"
    assert request.json["template"] == {
        "name": "order_shipped",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Siti"}, {"type": "text", "text": "A-17"}]}],
    }
    assert (message.type, message.status, message.text) == ("template", "sent", "Hi Siti, order A-17 has shipped.")


def test_whatsapp_cloud_re_engagement_error_closes_the_window(send, fake_meta, meta_whatsapp_channel):
    conversation = conversation_on(
        meta_whatsapp_channel, kind="whatsapp", address="+60123456789", phone="+60123456789", hours_ago=1
    )
    fake_meta.script(fakes.whatsapp_re_engagement(), endpoint="whatsapp")
    message = send(conversation)
    assert message.status == "failed"
    assert message.error_reason == (
        "Failed to send via WhatsApp: the 24-hour window is closed; WhatsApp requires a template message."
    )
    conversation.refresh_from_db()
    assert conversation.last_inbound_at is None


# Graph errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [fakes.token_expired(), fakes.token_invalid(), fakes.permission_denied(),
                                    fakes.permission_missing()])
def test_token_or_permission_problems_put_the_channel_in_error_with_the_reconnect_sentence(
    send, fake_meta, messenger_channel, answer
):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=1)
    fake_meta.script(answer, endpoint="send")
    message = send(conversation)

    assert (message.status, message.error_reason) == ("failed", RECONNECT)
    messenger_channel.refresh_from_db()
    # The channel says what an admin must do, for it and for the Instagram channel on the same token.
    assert (messenger_channel.status, messenger_channel.status_reason) == (Channel.Status.ERROR, TOKEN_PROBLEM_REASON)


def test_rate_limited_is_retried_with_backoff(send, fake_meta, messenger_channel):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=1)
    fake_meta.script(fakes.rate_limited(613), endpoint="send")
    message = send(conversation)

    assert message.status == "pending"
    assert message.error_code == "613"
    assert message.next_attempt_at > timezone.now()

    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    sending.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("sent", "")
    assert len(send_requests(fake_meta)) == 2


def test_user_unavailable_is_a_clear_permanent_failure(send, fake_meta, messenger_channel):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=1)
    fake_meta.script(fakes.user_unavailable(), endpoint="send")
    message = send(conversation)
    assert (message.status, message.error_reason) == (
        "failed", "Failed to send via Messenger: this person isn't available right now."
    )
    messenger_channel.refresh_from_db()
    assert messenger_channel.status == Channel.Status.ACTIVE


def test_server_error_is_transient(send, fake_meta, messenger_channel):
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=1)
    fake_meta.script(fakes.server_error(), endpoint="send")
    message = send(conversation)
    assert message.status == "pending"
    assert "temporary problem" in message.error_reason


def test_no_answer_in_time_is_unknown_never_resent(send, fake_meta, messenger_channel, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.5
    conversation = conversation_on(messenger_channel, kind="messenger", address=PSID, hours_ago=1)
    fake_meta.script(fakes.hang(5), endpoint="send")
    message = send(conversation)
    assert message.status == "unknown"
    assert message.error_code == "timeout"


@pytest.mark.parametrize(
    ("code", "subcode", "expected"),
    [
        (190, 463, "configuration"),
        (10, None, "configuration"),
        (10, 2018278, "window_closed"),
        (131047, None, "window_closed"),
        (551, 1545041, ""),
    ],
)
def test_classify_effects(code, subcode, expected):
    error = meta.classify(GraphError("", code=code, subcode=subcode, status=400), kind="messenger")
    assert error.effect == expected


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80007, 130429])
def test_classify_rate_limits_are_transient(code):
    from apps.providers.kinds.base import TransientSendError

    assert isinstance(meta.classify(GraphError("", code=code, status=400), kind="meta_whatsapp"), TransientSendError)
