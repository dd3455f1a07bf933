from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.conversations import attachments
from apps.conversations.models import Attachment, Message
from apps.message_templates.models import MessageTemplate
from apps.providers.models import Channel
from tests import factories
from tests.api.conftest import body
from tests.fakes import twilio as fake

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)
WINDOW_WARNING = "This contact hasn't messaged you for more than 24 hours; WhatsApp may require a template message."


def messages_url(conversation) -> str:
    return f"/api/v1/conversations/{conversation.pk}/messages/"


def post_json(client, url, data):
    return client.post(url, data, content_type="application/json")


# Reading -------------------------------------------------------------------------------------


def test_first_page_holds_the_newest_messages_oldest_first_and_previous_loads_older(alice_client, conversation):
    start = timezone.now() - timedelta(hours=2)
    for n in range(7):
        factories.MessageFactory(conversation=conversation, text=f"m{n}", created_at=start + timedelta(minutes=n))
    # The fixture's greeting is the newest (5 minutes ago).
    texts = [f"m{n}" for n in range(7)] + ["Hello, is my order ready?"]

    page = body(alice_client.get(messages_url(conversation), {"limit": 3}))
    assert [m["text"] for m in page["results"]] == texts[5:]
    assert page["next"] is None and page["previous"]

    older = body(alice_client.get(page["previous"]))
    assert [m["text"] for m in older["results"]] == texts[2:5]
    oldest = body(alice_client.get(older["previous"]))
    assert [m["text"] for m in oldest["results"]] == texts[:2]
    assert oldest["previous"] is None

    newer = body(alice_client.get(oldest["next"]))
    assert [m["text"] for m in newer["results"]] == texts[2:5]


def test_messages_with_the_same_timestamp_page_by_id(alice_client, whatsapp, customer):
    conversation = factories.ConversationFactory(channel=whatsapp, contact=customer)
    at = timezone.now()
    made = [factories.MessageFactory(conversation=conversation, created_at=at).pk for _ in range(5)]
    seen, url = [], messages_url(conversation) + "?limit=2"
    while url:
        page = body(alice_client.get(url))
        seen = [m["id"] for m in page["results"]] + seen
        url = page["previous"]
    assert seen == made


def test_message_shape(alice_client, alice, conversation):
    outbound = factories.MessageFactory(
        conversation=conversation, direction="outbound", text="On its way", sender=alice, external_id="SM" + "1" * 32,
        client_token="tok-shape",
    )
    photo = Attachment.objects.create(
        organization=conversation.organization, message=outbound, file=SimpleUploadedFile("p.png", PNG),
        content_type="image/png", filename="receipt.png", size=len(PNG),
    )
    results = body(alice_client.get(messages_url(conversation)))["results"]
    inbound, sent = results
    assert inbound["direction"] == "inbound" and inbound["status"] == "received"
    assert inbound["sender"] == {"kind": "contact", "name": "Siti Rahman"}
    assert sent["sender"] == {"kind": "agent", "name": "alice"}
    assert sent["external_id"] == "SM" + "1" * 32 and sent["client_token"] == "tok-shape"
    assert sent["attachments"] == [
        {
            "id": photo.pk,
            "url": "http://testserver" + attachments.attachment_url(photo),
            "content_type": "image/png",
            "filename": "receipt.png",
            "size": len(PNG),
        }
    ]
    assert set(sent) >= {"type", "error_code", "error_reason", "location", "created_at", "sent_at", "delivered_at",
                         "read_at"}


def test_message_page_query_count_does_not_grow_with_rows(alice_client, conversation, django_assert_num_queries):
    def add(count):
        for _ in range(count):
            message = factories.MessageFactory(conversation=conversation)
            Attachment.objects.create(
                organization=conversation.organization, message=message, file=SimpleUploadedFile("p.png", PNG),
                content_type="image/png", filename="p.png", size=len(PNG),
            )

    add(3)
    alice_client.get(messages_url(conversation))
    with CaptureQueriesContext(connection) as baseline:
        assert len(body(alice_client.get(messages_url(conversation), {"limit": 100}))["results"]) == 4
    add(27)
    with django_assert_num_queries(len(baseline)):
        assert len(body(alice_client.get(messages_url(conversation), {"limit": 100}))["results"]) == 31
    # Session, user, membership, the conversation, the page and its attachments.
    assert len(baseline) <= 6, [q["sql"] for q in baseline.captured_queries]


# Sending -------------------------------------------------------------------------------------


def test_send_answers_202_pending_and_the_message_reaches_sent(
    alice_client, conversation, fake_twilio, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(alice_client, messages_url(conversation), {"text": "Your order is ready", "client_token": "t-1"})
    assert response.status_code == 202, response.content
    sent = body(response)
    assert sent["status"] == "pending" and sent["direction"] == "outbound" and sent["text"] == "Your order is ready"
    assert sent["client_token"] == "t-1" and sent["sender"] == {"kind": "agent", "name": "alice"}

    message = Message.objects.get(pk=sent["id"])
    assert message.status == Message.Status.SENT
    assert [m["to"] for m in fake_twilio.sent] == ["whatsapp:+60123456789"]
    assert message.external_id == fake_twilio.sent[0]["sid"]

    # The same client token again (a double click, a retried request): the same message, one send.
    with django_capture_on_commit_callbacks(execute=True):
        again = post_json(alice_client, messages_url(conversation), {"text": "Your order is ready", "client_token": "t-1"})
    assert again.status_code == 202 and body(again)["id"] == sent["id"]
    assert body(again)["status"] == "sent"
    assert len(fake_twilio.sent) == 1


def test_send_with_an_uploaded_attachment(alice_client, conversation, whatsapp, fake_twilio,
                                          django_capture_on_commit_callbacks):
    upload = alice_client.post(
        "/api/v1/attachments/", {"file": SimpleUploadedFile("receipt.png", PNG, "image/png"), "channel_id": whatsapp.pk}
    )
    assert upload.status_code == 201, upload.content
    uploaded = body(upload)
    assert uploaded["filename"] == "receipt.png" and uploaded["size"] == len(PNG)
    assert uploaded["content_type"] == "image/png"

    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(alice_client, messages_url(conversation), {"attachment_ids": [uploaded["id"]]})
    assert response.status_code == 202, response.content
    assert body(response)["type"] == "image"
    assert [a["id"] for a in body(response)["attachments"]] == [uploaded["id"]]
    assert Message.objects.get(pk=body(response)["id"]).status == Message.Status.SENT
    assert fake_twilio.requests[-1].params["MediaUrl"][0].startswith("https://parley.test/files/")


def test_upload_refuses_a_type_whatsapp_does_not_carry(alice_client, whatsapp):
    response = alice_client.post(
        "/api/v1/attachments/",
        {"file": SimpleUploadedFile("page.html", b"<p>hi</p>", "text/html"), "channel_id": whatsapp.pk},
    )
    assert response.status_code == 400
    assert body(response)["error"] == {
        "code": "attachment_type_not_allowed",
        "message": "WhatsApp does not accept page.html (text/html).",
    }
    assert not Attachment.objects.exists()


@pytest.mark.parametrize(
    ("setup", "payload", "code", "message"),
    [
        (None, {"text": "   "}, "no_content", "No content to send"),
        ("unconfigured", {"text": "Hi"}, "channel_not_configured", "WhatsApp is not configured for this organization."),
        ("disabled", {"text": "Hi"}, "channel_not_configured", "WhatsApp is not configured for this organization."),
        ("not_opted_in", {"text": "Hi"}, "not_opted_in", "This contact has not opted in to WhatsApp messages."),
        ("unsubscribed", {"text": "Hi"}, "unsubscribed", "This contact has unsubscribed from WhatsApp messages."),
        ("window_closed", {"text": "Hi"}, "outside_window", WINDOW_WARNING),
        (None, {"text": "x" * 4097}, "text_too_long", "Messages on WhatsApp can be at most 4096 characters."),
    ],
)
def test_send_refusals_have_codes_and_words(alice_client, conversation, setup, payload, code, message, fake_twilio):
    channel, contact = conversation.channel, conversation.contact
    if setup == "unconfigured":
        Channel.objects.filter(pk=channel.pk).update(secrets={})
    elif setup == "disabled":
        Channel.objects.filter(pk=channel.pk).update(status="disabled")
    elif setup == "not_opted_in":
        contact.consents.filter(kind="whatsapp").update(opted_in=False)
    elif setup == "unsubscribed":
        contact.consents.filter(kind="whatsapp").update(opted_in=False, opted_out_at=timezone.now())
    elif setup == "window_closed":
        type(conversation).objects.filter(pk=conversation.pk).update(last_inbound_at=timezone.now() - timedelta(hours=25))
    response = post_json(alice_client, messages_url(conversation), payload)
    assert response.status_code == 400, response.content
    assert body(response) == {"error": {"code": code, "message": message}}
    assert not Message.objects.filter(direction="outbound").exists()
    assert fake_twilio.sent == []


def test_select_a_contact_and_send_continues_the_open_conversation(
    alice_client, conversation, whatsapp, customer, fake_twilio, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(
            alice_client, f"/api/v1/contacts/{customer.pk}/messages/", {"channel_id": whatsapp.pk, "text": "Hello Siti"}
        )
    assert response.status_code == 202, response.content
    message = Message.objects.get(pk=body(response)["id"])
    assert message.conversation_id == conversation.pk and message.status == Message.Status.SENT
    assert body(response)["conversation_id"] == conversation.pk


def test_a_new_contact_needs_a_template_then_the_conversation_starts(
    alice_client, whatsapp, acme, fake_twilio, django_capture_on_commit_callbacks
):
    contact = factories.ContactFactory(organization=acme, name="Ali", phone="+60198765432")
    url = f"/api/v1/contacts/{contact.pk}/messages/"
    refused = post_json(alice_client, url, {"channel_id": whatsapp.pk, "text": "Hello"})
    assert refused.status_code == 400
    assert body(refused)["error"] == {"code": "outside_window", "message": WINDOW_WARNING}

    template = MessageTemplate.objects.create(
        organization=acme, name="Welcome", body="Hi {{1}}, welcome!", provider_template_id="HX" + "b" * 32
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(
            alice_client, url, {"channel_id": whatsapp.pk, "template_id": template.pk, "template_variables": {"1": "Ali"}}
        )
    assert response.status_code == 202, response.content
    assert body(response)["type"] == "template" and body(response)["text"] == "Hi Ali, welcome!"
    assert Message.objects.get(pk=body(response)["id"]).status == Message.Status.SENT
    assert fake_twilio.requests[-1].param("ContentSid") == "HX" + "b" * 32
    assert contact.conversations.count() == 1


def test_contact_send_on_a_channel_the_agent_was_not_given_is_not_found(bob_client, whatsapp, customer):
    response = post_json(bob_client, f"/api/v1/contacts/{customer.pk}/messages/", {"channel_id": whatsapp.pk, "text": "Hi"})
    assert response.status_code == 404
    assert body(response)["error"]["code"] == "not_found"


def test_retry_after_a_permanent_failure(alice_client, conversation, fake_twilio, django_capture_on_commit_callbacks):
    fake_twilio.script(fake.error(400, 21211, "The 'To' number is not a valid phone number."))
    with django_capture_on_commit_callbacks(execute=True):
        response = post_json(alice_client, messages_url(conversation), {"text": "Hi"})
    message = Message.objects.get(pk=body(response)["id"])
    assert message.status == Message.Status.FAILED
    failed = body(alice_client.get(messages_url(conversation)))["results"][-1]
    assert failed["status"] == "failed" and failed["error_code"] == "21211"
    assert failed["error_reason"] == "Failed to send via WhatsApp: the contact's phone number is not valid."

    with django_capture_on_commit_callbacks(execute=True):
        retried = alice_client.post(f"/api/v1/messages/{message.pk}/retry/")
    assert retried.status_code == 202, retried.content
    assert body(retried)["status"] == "pending" and body(retried)["id"] == message.pk
    message.refresh_from_db()
    assert message.status == Message.Status.SENT

    again = alice_client.post(f"/api/v1/messages/{message.pk}/retry/")
    assert again.status_code == 400
    assert body(again)["error"] == {
        "code": "not_retryable",
        "message": "Only failed or unconfirmed messages can be sent again.",
    }
