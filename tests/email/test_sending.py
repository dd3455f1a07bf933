"""Sending email from the outbox over SMTP (the aiosmtpd server the tests start: STARTTLS and
AUTH): new emails and replies with their headers, text and HTML, the agent's signature,
attachments, our Message-ID as the provider id; refusals in a person's words, and a connection
lost once the message was handed over is `unknown`, never resent."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.accounts.models import Membership
from apps.contacts.models import ContactConsent
from apps.conversations import services
from apps.conversations.models import Conversation, Message
from apps.providers.models import Channel
from tests.fixtures.email import REPLY_DOMAIN, connect_email, email_credentials, eml

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dana(acme):
    from apps.contacts import services as contact_services

    return contact_services.contact_create(organization=acme, name="Dana Scully", email="dana@example.com")


def _new_email(client, channel, contact, *, text="Your order ships today.", subject="Your order", **extra):
    return client.post(f"/api/v1/contacts/{contact.pk}/messages/", data=json.dumps(
        {"channel_id": channel.pk, "text": text, "subject": subject, **extra}), content_type="application/json")


def test_a_new_email_goes_out_with_our_message_id(alice_client, alice, email_channel, dana, smtp_server):
    Membership.objects.filter(user=alice).update(signature="Alice\nAcme Support")
    response = _new_email(alice_client, email_channel, dana)
    assert response.status_code == 202, response.content
    message = Message.objects.get()
    assert message.status == "sent"
    [received] = smtp_server.received
    assert received.sender == "support@acme.test" and received.recipients == ["dana@example.com"]
    mail = received.message
    assert mail["Message-ID"] == message.external_id
    assert message.external_id.startswith(f"<parley-message-{message.pk}.") and message.external_id.endswith("@acme.test>")
    assert str(mail["From"]) == "Acme Support <support@acme.test>"
    assert mail["Subject"] == "Your order" and mail["In-Reply-To"] is None
    token = services.conversation_reply_token(message.conversation)
    assert str(mail["Reply-To"]) == f"Acme Support <reply+{token}@{REPLY_DOMAIN}>"
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = mail.get_body(("html",)).get_content()
    assert text == "Your order ships today.\n\n-- \nAlice\nAcme Support\n"
    assert "<p>Your order ships today.</p>" in html and "Acme Support" in html
    assert smtp_server.logins == ["support@acme.test:ok"]
    assert message.conversation.subject == "Your order"
    assert response.json()["email"] == {"subject": "Your order"}


def test_a_new_email_needs_a_subject(alice_client, email_channel, dana, smtp_server):
    response = _new_email(alice_client, email_channel, dana, subject="  ")
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "no_subject", "message": "Add a subject for the email."}
    assert smtp_server.received == []


def test_each_new_email_is_its_own_conversation(alice_client, email_channel, dana, smtp_server):
    _new_email(alice_client, email_channel, dana, subject="First")
    _new_email(alice_client, email_channel, dana, subject="Second")
    assert Conversation.objects.count() == 2


def test_a_reply_threads_under_the_customer_s_email(alice_client, email_channel, smtp_server):
    from tests.email.test_intake import relay

    relay(email_channel, eml("alternative"))
    conversation = Conversation.objects.get()
    response = alice_client.post(f"/api/v1/conversations/{conversation.pk}/messages/", data=json.dumps(
        {"text": "We are on it."}), content_type="application/json")
    assert response.status_code == 202
    mail = smtp_server.received[-1].message
    assert mail["Subject"] == "Re: My order #1234 has not arrived"
    assert mail["In-Reply-To"] == "<alternative-1@example.com>"
    assert mail["References"] == "<alternative-1@example.com>"
    # The customer answers our reply: it lands in the same conversation.
    ours = Message.objects.get(direction="outbound")
    relay(email_channel, eml("reply_by_header", in_reply_to=ours.external_id,
                             references=f"<alternative-1@example.com> {ours.external_id}"))
    assert Conversation.objects.count() == 1 and conversation.messages.count() == 3


def test_attachments_are_sent(alice_client, email_channel, dana, smtp_server):
    upload = alice_client.post("/api/v1/attachments/", data={
        "file": SimpleUploadedFile("invoice.pdf", b"%PDF-1.4 test", content_type="application/pdf"),
        "channel_id": email_channel.pk})
    assert upload.status_code == 201, upload.content
    _new_email(alice_client, email_channel, dana, attachment_ids=[upload.json()["id"]])
    mail = smtp_server.received[-1].message
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "invoice.pdf" and attachment.get_content() == b"%PDF-1.4 test"


def test_a_refused_recipient_fails_with_a_sentence_and_marks_the_address(alice_client, email_channel, dana, smtp_server):
    smtp_server.behaviour.refuse_recipients["dana@example.com"] = "550 5.1.1 <dana@example.com>: user unknown"
    _new_email(alice_client, email_channel, dana)
    message = Message.objects.get()
    assert message.status == "failed" and message.error_code == "smtp-550"
    assert message.error_reason == "Failed to send via Email: the address does not exist."
    assert ContactConsent.objects.get(contact=dana, kind="email").blocked_at is not None
    # The next send is refused before it reaches the server, in words about email.
    response = _new_email(alice_client, email_channel, dana)
    assert response.json()["error"]["message"].startswith("This contact's email address is undeliverable")


def test_a_policy_refusal_fails_without_marking_the_address(alice_client, email_channel, dana, smtp_server):
    smtp_server.behaviour.refuse_data = "554 5.7.1 Message rejected as spam"
    _new_email(alice_client, email_channel, dana)
    message = Message.objects.get()
    assert message.status == "failed"
    assert message.error_reason == "Failed to send via Email: the recipient's server rejected the message as spam or by its policy."
    assert not ContactConsent.objects.filter(contact=dana, blocked_at__isnull=False).exists()


def test_a_4xx_is_retried_later(alice_client, email_channel, dana, smtp_server):
    smtp_server.behaviour.refuse_data = "451 4.3.0 Try again later"
    _new_email(alice_client, email_channel, dana)
    message = Message.objects.get()
    assert message.status == "pending" and message.next_attempt_at is not None
    assert message.error_reason == "The email server is temporarily refusing the message (451); we will try again."


def test_a_connection_lost_after_data_is_unknown_and_never_resent(alice_client, email_channel, dana, smtp_server):
    smtp_server.behaviour.drop_after_data = True
    _new_email(alice_client, email_channel, dana)
    message = Message.objects.get()
    assert message.status == "unknown" and message.error_code == "connection_lost"
    assert len(smtp_server.received) == 1
    from apps.conversations import sending

    sending.outbox_sweep()
    assert len(smtp_server.received) == 1


def test_a_refused_login_puts_the_channel_in_error(alice, alice_client, acme, dana, smtp_server):
    channel = connect_email(alice, email_credentials(smtp_server, smtp_password="wrong"))
    _new_email(alice_client, channel, dana)
    message = Message.objects.get()
    assert message.status == "failed" and message.error_code == "smtp-535"
    channel.refresh_from_db()
    assert channel.status == Channel.Status.ERROR
    assert channel.status_reason == "The email server refused the channel's username or password. Please update the SMTP settings."


def test_an_unreachable_server_is_transient(alice, alice_client, dana, smtp_server):
    from tests.fakes.ports import free_port

    channel = connect_email(alice, email_credentials(smtp_server, smtp_port=str(free_port())))
    _new_email(alice_client, channel, dana)
    message = Message.objects.get()
    assert message.status == "pending" and message.error_code == "connection"


def test_an_untrusted_certificate_is_a_configuration_problem(alice, alice_client, dana, smtp_server, settings):
    settings.EMAIL_CA_FILE = ""
    _new_email(alice_client, connect_email(alice, email_credentials(smtp_server)), dana)
    message = Message.objects.get()
    assert message.status == "failed" and message.error_code == "tls"


def test_implicit_tls(alice, alice_client, dana, email_certificate, email_servers):
    from tests.fakes.smtp import FakeSMTP
    from tests.fixtures.email import ADDRESS, PASSWORD

    server = FakeSMTP(username=ADDRESS, password=PASSWORD, certificate=email_certificate, implicit_tls=True).start()
    try:
        channel = connect_email(alice, email_credentials(server, smtp_security="tls"))
        _new_email(alice_client, channel, dana)
        assert Message.objects.get().status == "sent" and len(server.received) == 1
    finally:
        server.stop()


def test_check_logs_in_to_smtp(alice, smtp_server):
    from apps.providers import catalog

    health = catalog.adapter_for(connect_email(alice, email_credentials(smtp_server))).check()
    assert health.ok and health.summary == "Connected: Parley can send mail."
    bad = catalog.adapter_for(connect_email(alice, email_credentials(smtp_server, smtp_password="nope"))).check()
    assert not bad.ok and "refused the channel's username or password" in bad.summary


@pytest.mark.parametrize("field,value,sentence", [
    ("address", "not an address", "Enter an email address, like support@example.com."),
    ("smtp_port", "99999", "Enter a port number between 1 and 65535."),
    ("smtp_security", "ssl3", "Choose starttls, tls or none."),
    ("sns_topic_arn", "topic", "Enter the SNS topic's ARN, like arn:aws:sns:us-east-1:123456789012:inbound."),
])
def test_credentials_are_checked(alice_client, smtp_server, field, value, sentence):
    response = alice_client.post("/api/v1/channels/", data=json.dumps(
        {"kind": "email", "name": "x", "credentials": email_credentials(smtp_server, **{field: value})}),
        content_type="application/json")
    assert response.status_code == 400
    assert sentence in response.content.decode()


def test_the_api_shows_secrets_as_set_and_generates_the_inbound_secret(alice_client, smtp_server):
    credentials = email_credentials(smtp_server)
    del credentials["inbound_secret"]
    response = alice_client.post("/api/v1/channels/", data=json.dumps(
        {"kind": "email", "name": "Support", "credentials": credentials}), content_type="application/json")
    assert response.status_code == 201
    channel = response.json()
    assert channel["secrets"] == {"smtp_password": "set", "imap_password": "not set", "inbound_secret": "set"}
    assert channel["webhooks"] == {"inbound": f"https://parley.test/webhooks/email/{channel['uuid']}/",
                                   "ses": f"https://parley.test/webhooks/ses/{channel['uuid']}/"}
    assert "smtp-secret-password" not in response.content.decode()
    assert len(Channel.objects.get(pk=channel["id"]).secrets["inbound_secret"]) >= 40
