"""Email arriving: the raw relay endpoint (per-channel secret), Amazon SES through SNS (signature
verified, the configured topic only), and what the pipeline makes of it: contacts, threads,
attachments, auto-replies, bounces and complaints. Bad input is refused and nothing is stored."""

import base64
import json
import threading

import pytest
from django.db import connection
from django.test import Client

from apps.contacts.models import ContactConsent
from apps.conversations.models import Conversation, Message
from apps.conversations import services
from apps.providers.models import InboundEvent
from tests.fakes.sns import TOPIC
from tests.fixtures.email import INBOUND_SECRET, eml

pytestmark = pytest.mark.django_db(transaction=True)


def relay(channel, raw: bytes, *, secret: str = INBOUND_SECRET, content_type: str = "message/rfc822"):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    return Client().post(f"/webhooks/email/{channel.uuid}/", data=raw, content_type=content_type, **headers)


def ses(channel, body: bytes):
    return Client().post(f"/webhooks/ses/{channel.uuid}/", data=body, content_type="text/plain; charset=UTF-8")


def test_a_relayed_message_opens_a_conversation_with_the_sender(email_channel):
    response = relay(email_channel, eml("alternative"))
    assert response.status_code == 204
    message = Message.objects.get()
    assert message.direction == "inbound" and message.external_id == "<alternative-1@example.com>"
    assert message.text.startswith("Hello, my order #1234")
    assert message.details["subject"] == "My order #1234 has not arrived"
    assert message.details["from"]["address"] == "dana@example.com"
    conversation = message.conversation
    assert conversation.subject == "My order #1234 has not arrived"
    assert conversation.thread == "<alternative-1@example.com>"
    assert conversation.contact.name == "Dana Scully"
    assert conversation.contact.identities.get().address == "dana@example.com"


def test_basic_auth_with_the_secret_as_password_is_accepted(email_channel):
    token = base64.b64encode(f"relay:{INBOUND_SECRET}".encode()).decode()
    response = Client().post(f"/webhooks/email/{email_channel.uuid}/", data=eml("alternative"),
                             content_type="message/rfc822", HTTP_AUTHORIZATION=f"Basic {token}")
    assert response.status_code == 204 and Message.objects.count() == 1


@pytest.mark.parametrize("secret", ["", "wrong-secret", "Bearer", "ünïcode"])
def test_a_wrong_secret_is_403_and_nothing_is_stored(email_channel, secret, caplog):
    response = relay(email_channel, eml("alternative"), secret=secret)
    assert response.status_code == 403
    assert InboundEvent.objects.count() == 0 and Message.objects.count() == 0
    assert "bad signature" in caplog.text


@pytest.mark.parametrize("raw,content_type", [
    (b"", "message/rfc822"),
    (b"this is not an email", "message/rfc822"),
    (b"Subject: no sender\r\n\r\nHi", "message/rfc822"),
    (b"From: a@example.com\r\n\r\nHi", "application/json"),
])
def test_malformed_input_is_400_logged_and_nothing_is_stored(email_channel, raw, content_type, caplog):
    response = relay(email_channel, raw, content_type=content_type)
    assert response.status_code == 400
    assert "malformed" in caplog.text
    assert InboundEvent.objects.count() == 0


def test_a_duplicate_is_stored_once(email_channel):
    assert relay(email_channel, eml("attachments")).status_code == 204
    assert relay(email_channel, eml("attachments")).status_code == 204
    assert InboundEvent.objects.count() == 1 and Message.objects.count() == 1
    assert Message.objects.get().attachments.count() == 2


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_concurrent_duplicates_are_stored_once(email_channel):
    raw, statuses = eml("alternative"), []

    def post():
        statuses.append(relay(email_channel, raw).status_code)
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [204] * 6
    assert InboundEvent.objects.count() == 1 and Message.objects.count() == 1


def test_attachments_and_inline_images_are_stored(email_channel):
    relay(email_channel, eml("inline_image"))
    message = Message.objects.get()
    [logo] = message.attachments.all()
    assert logo.filename == "logo.png" and logo.source_url == "cid:logo@example.com" and logo.size > 0
    assert logo.file.read().startswith(b"\x89PNG")


def test_a_reply_naming_our_message_continues_its_conversation(email_channel):
    relay(email_channel, eml("alternative"))
    first = Message.objects.get()
    raw = eml("reply_by_header", in_reply_to=first.external_id, references=first.external_id)
    relay(email_channel, raw)
    reply = Message.objects.exclude(pk=first.pk).get()
    assert reply.conversation_id == first.conversation_id and reply.text == "Thanks, that fixed it!"
    assert "Please try restarting the router." in reply.details["full_text"]


def test_a_reply_to_a_resolved_conversation_reopens_it(email_channel):
    relay(email_channel, eml("alternative"))
    first = Message.objects.get()
    services.conversation_set_status(conversation=first.conversation, status="resolved")
    relay(email_channel, eml("reply_by_header", in_reply_to=first.external_id, references=first.external_id))
    assert Conversation.objects.count() == 1 and Conversation.objects.get().status == "open"


def test_a_reply_address_continues_its_conversation(email_channel):
    relay(email_channel, eml("alternative"))
    conversation = Conversation.objects.get()
    token = services.conversation_reply_token(conversation)
    relay(email_channel, eml("reply_by_address", token=token))
    assert Conversation.objects.count() == 1
    assert conversation.messages.count() == 2


def test_a_forged_reply_token_starts_a_new_conversation(email_channel):
    relay(email_channel, eml("alternative"))
    conversation = Conversation.objects.get()
    relay(email_channel, eml("reply_by_address", token=f"{conversation.pk}-00000000000000000000"))
    assert Conversation.objects.count() == 2


def test_a_new_subject_from_the_same_person_starts_a_new_conversation(email_channel):
    relay(email_channel, eml("alternative"))
    relay(email_channel, eml("attachments"))
    assert Conversation.objects.count() == 2
    assert {c.contact_id for c in Conversation.objects.all()} == {Conversation.objects.first().contact_id}


def test_a_reply_naming_another_channel_s_message_starts_a_new_conversation(email_channel, acme, alice, smtp_server):
    from tests.fixtures.email import connect_email, email_credentials

    other = connect_email(alice, email_credentials(smtp_server, address="sales@acme.test", inbound_secret="s" * 30))
    relay(other, eml("alternative"), secret="s" * 30)
    theirs = Message.objects.get()
    relay(email_channel, eml("reply_by_header", in_reply_to=theirs.external_id, references=theirs.external_id))
    assert Conversation.objects.filter(channel=email_channel).count() == 1
    assert Conversation.objects.get(channel=email_channel).pk != theirs.conversation_id


def test_an_auto_reply_is_marked(email_channel):
    relay(email_channel, eml("auto_reply"))
    assert Message.objects.get().details["automated"] is True


def test_a_spoofed_display_name_is_kept_for_the_agent_and_never_names_the_contact(email_channel):
    relay(email_channel, eml("spoofed_name"))
    message = Message.objects.get()
    assert message.details["spoofed_name"] is True
    assert message.conversation.contact.name == ""


def _sent_message(channel, *, external_id="<parley-message-1.x@acme.test>"):
    relay(channel, eml("alternative"))
    conversation = Conversation.objects.get()
    message, _ = services.message_record(conversation=conversation, direction="outbound", external_id=external_id,
                                         text="Your order ships today.")
    return message


def test_a_bounce_fails_the_original_and_marks_the_address_undeliverable(email_channel):
    sent = _sent_message(email_channel)
    relay(email_channel, eml("bounce", recipient="dana@example.com", original=sent.external_id))
    sent.refresh_from_db()
    assert sent.status == "failed" and sent.error_code == "5.1.1"
    assert sent.error_reason == "Failed to send via Email: the address does not exist."
    consent = ContactConsent.objects.get(contact=sent.conversation.contact, kind="email")
    assert consent.blocked_at is not None
    assert Message.objects.filter(direction="inbound").count() == 1  # the report is not a message


def test_a_bounce_before_we_recorded_the_send_waits_for_it(email_channel):
    relay(email_channel, eml("bounce", recipient="dana@example.com", original="<later@acme.test>"))
    assert InboundEvent.objects.get(kind="status").state == "deferred"


# Amazon SES through SNS ------------------------------------------------------------------------


def _received(raw: bytes, *, encoding="BASE64") -> dict:
    content = base64.b64encode(raw).decode() if encoding == "BASE64" else raw.decode()
    return {"notificationType": "Received", "mail": {"messageId": "ses-1", "commonHeaders": {}},
            "receipt": {"action": {"type": "SNS", "topicArn": TOPIC, "encoding": encoding}}, "content": content}


@pytest.mark.parametrize("version,encoding", [("1", "BASE64"), ("2", "UTF8")])
def test_an_ses_inbound_notification_is_received(email_channel, fake_sns, version, encoding):
    response = ses(email_channel, fake_sns.notification(_received(eml("alternative"), encoding=encoding), version=version))
    assert response.status_code == 200
    assert Message.objects.get().external_id == "<alternative-1@example.com>"


def test_the_sns_certificate_is_fetched_once(email_channel, fake_sns):
    before = fake_sns.certificate_fetches
    ses(email_channel, fake_sns.notification(_received(eml("alternative"))))
    ses(email_channel, fake_sns.notification(_received(eml("attachments"))))
    assert fake_sns.certificate_fetches - before == 1


def test_the_subscription_is_confirmed(email_channel, fake_sns):
    response = ses(email_channel, fake_sns.subscription(token="tok-123"))
    assert response.status_code == 200
    assert fake_sns.confirmations == ["tok-123"]
    assert InboundEvent.objects.get().state == "processed"


def test_an_ses_bounce_fails_the_original(email_channel, fake_sns):
    sent = _sent_message(email_channel)
    bounce = {"notificationType": "Bounce", "mail": {"messageId": "ses-9", "commonHeaders": {"messageId": sent.external_id}},
              "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "feedbackId": "fb-1",
                         "bouncedRecipients": [{"emailAddress": "dana@example.com", "status": "5.1.1",
                                                "action": "failed", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}
    assert ses(email_channel, fake_sns.notification(bounce)).status_code == 200
    sent.refresh_from_db()
    assert sent.status == "failed" and sent.error_reason == "Failed to send via Email: the address does not exist."
    assert ContactConsent.objects.get(contact=sent.conversation.contact, kind="email").blocked_at is not None


def test_an_ses_transient_bounce_fails_the_message_but_keeps_the_address(email_channel, fake_sns):
    sent = _sent_message(email_channel)
    bounce = {"notificationType": "Bounce", "mail": {"commonHeaders": {"messageId": sent.external_id}},
              "bounce": {"bounceType": "Transient", "feedbackId": "fb-2",
                         "bouncedRecipients": [{"emailAddress": "dana@example.com", "status": "4.2.2"}]}}
    ses(email_channel, fake_sns.notification(bounce))
    sent.refresh_from_db()
    assert sent.status == "failed"
    assert not ContactConsent.objects.filter(blocked_at__isnull=False).exists()


def test_an_ses_complaint_marks_the_address_undeliverable(email_channel, fake_sns):
    relay(email_channel, eml("alternative"))
    contact = Conversation.objects.get().contact
    complaint = {"notificationType": "Complaint", "mail": {"commonHeaders": {"messageId": "<x@acme.test>"}},
                 "complaint": {"feedbackId": "fb-3", "complaintFeedbackType": "abuse",
                               "complainedRecipients": [{"emailAddress": "Dana@Example.com"}]}}
    assert ses(email_channel, fake_sns.notification(complaint)).status_code == 200
    consent = ContactConsent.objects.get(contact=contact, kind="email")
    assert consent.blocked_at is not None and consent.blocked_reason == "They reported our email as spam."


def test_a_bad_sns_signature_is_403_and_nothing_is_stored(email_channel, fake_sns):
    body = json.loads(fake_sns.notification(_received(eml("alternative"))))
    body["Message"] = body["Message"].replace("Received", "Bounce")
    assert ses(email_channel, json.dumps(body).encode()).status_code == 403
    assert InboundEvent.objects.count() == 0


def test_another_topic_is_403(email_channel, fake_sns):
    body = fake_sns.notification(_received(eml("alternative")), topic="arn:aws:sns:eu-west-1:999999999999:theirs")
    assert ses(email_channel, body).status_code == 403
    assert InboundEvent.objects.count() == 0


def test_a_certificate_from_another_host_is_refused(email_channel, fake_sns, settings):
    settings.SNS_CERT_HOST_PATTERN = r"sns\.[a-z0-9-]+\.amazonaws\.com"
    assert ses(email_channel, fake_sns.notification(_received(eml("alternative")))).status_code == 403
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"Type": "Notification"}'])
def test_a_malformed_sns_body_is_400(email_channel, fake_sns, body):
    assert ses(email_channel, body).status_code == 400
    assert InboundEvent.objects.count() == 0


def test_a_signed_notification_without_ses_json_is_400(email_channel, fake_sns):
    signed = fake_sns.sign({"Type": "Notification", "MessageId": "m-1", "TopicArn": TOPIC, "Message": "hello",
                            "Timestamp": "2026-12-01T12:00:00.000Z"})
    assert ses(email_channel, json.dumps(signed).encode()).status_code == 400


def test_the_ses_duplicate_is_stored_once(email_channel, fake_sns):
    body = fake_sns.notification(_received(eml("alternative")))
    ses(email_channel, body)
    ses(email_channel, body)
    assert InboundEvent.objects.count() == 1 and Message.objects.count() == 1


def test_the_same_mail_by_relay_and_by_ses_is_one_message(email_channel, fake_sns):
    relay(email_channel, eml("alternative"))
    ses(email_channel, fake_sns.notification(_received(eml("alternative"))))
    assert Message.objects.count() == 1
