"""message_deliver against the fake Twilio server over real HTTP."""

import socket
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from apps.contacts import services as contact_services
from apps.conversations import sending
from apps.conversations.models import Conversation, Message
from apps.core.errors import ServiceError
from apps.providers import ratelimit
from apps.providers.models import Channel, InboundEvent
from tests import factories
from tests.conversations.conftest import PNG
from tests.fakes import twilio as fakes

INVALID_CONFIGURATION = "Invalid WhatsApp configuration for your organization. Please contact admin."


@pytest.fixture
def send(alice_membership, open_conversation, django_capture_on_commit_callbacks):
    """Send in the open conversation and run the delivery task as the commit would."""

    def run(text="Hello from Acme", **kwargs):
        kwargs.setdefault("conversation", open_conversation)
        with django_capture_on_commit_callbacks(execute=True):
            message = sending.message_send(membership=alice_membership, text=text, **kwargs)
        message.refresh_from_db()
        return message

    return run


def queued(alice_membership, conversation, text="Hello"):
    """A pending message whose delivery task has not run."""
    return sending.message_send(membership=alice_membership, conversation=conversation, text=text)


def deliver_again(message):
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    sending.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    return message


def test_full_send_reaches_twilio_and_records_the_sid(send, fake_twilio, whatsapp, upload):
    photo = upload()
    message = send(text="Your receipt", attachment_ids=[photo.pk])

    assert len(fake_twilio.requests) == 1
    request = fake_twilio.requests[0]
    assert request.auth == (factories.TEST_ACCOUNT_SID, factories.TEST_AUTH_TOKEN)
    assert request.param("From") == "whatsapp:+14155238886"
    assert request.param("To") == "whatsapp:+60123456789"
    assert request.param("Body") == "Your receipt"
    assert request.param("StatusCallback") == f"https://parley.test/webhooks/twilio/{whatsapp.uuid}/status/"
    [media_url] = request.params["MediaUrl"]
    assert media_url.startswith("https://parley.test/files/public/")

    assert message.status == Message.Status.SENT
    assert message.external_id == fake_twilio.sent[0]["sid"]
    assert message.sent_at is not None and message.lease_until is None and message.attempts == 1

    # The provider fetches our signed URL without a session.
    response = Client().get(urlsplit(media_url).path)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"


def test_sender_stored_without_prefix_is_prefixed(send, fake_twilio, whatsapp):
    whatsapp.config = {**whatsapp.config, "sender": "+14155238886"}
    whatsapp.save()
    message = send()
    assert fake_twilio.requests[0].param("From") == "whatsapp:+14155238886"
    assert message.status == Message.Status.SENT


def test_bad_credentials_put_the_channel_in_error(send, fake_twilio, whatsapp, alice_membership, open_conversation):
    fake_twilio.script(fakes.authenticate())
    message = send()
    assert (message.status, message.error_code, message.error_reason) == ("failed", "20003", INVALID_CONFIGURATION)
    assert message.failed_at is not None
    whatsapp.refresh_from_db()
    assert (whatsapp.status, whatsapp.status_reason) == (Channel.Status.ERROR, INVALID_CONFIGURATION)

    open_conversation.refresh_from_db()
    with pytest.raises(ServiceError) as refused:
        sending.message_send(membership=alice_membership, conversation=open_conversation, text="Again")
    assert (refused.value.code, refused.value.message) == ("channel_error", INVALID_CONFIGURATION)
    assert len(fake_twilio.requests) == 1


def test_wrong_account_sid_is_a_configuration_error(send, fake_twilio, whatsapp):
    whatsapp.config = {**whatsapp.config, "account_sid": "AC" + "9" * 32}
    whatsapp.save()
    message = send()
    assert message.error_reason == INVALID_CONFIGURATION
    whatsapp.refresh_from_db()
    assert whatsapp.status == Channel.Status.ERROR


def test_invalid_number_fails_with_a_readable_reason(send, fake_twilio, whatsapp):
    fake_twilio.script(fakes.invalid_to("whatsapp:+60123456789"))
    message = send()
    assert message.status == Message.Status.FAILED
    assert message.error_code == "21211"
    assert message.error_reason == "Failed to send via WhatsApp: the contact's phone number is not valid."
    whatsapp.refresh_from_db()
    assert whatsapp.status == Channel.Status.ACTIVE


def test_unsubscribed_recipient_opts_the_contact_out(send, fake_twilio, customer, alice_membership, open_conversation):
    fake_twilio.script(fakes.unsubscribed())
    message = send()
    assert (message.status, message.error_code) == ("failed", "21610")
    assert message.error_reason.startswith("Failed to send via WhatsApp: ")
    customer.refresh_from_db()
    assert customer.whatsapp_consent.opted_in is False and customer.whatsapp_consent.opted_out_at is not None
    open_conversation.refresh_from_db()
    with pytest.raises(ServiceError) as refused:
        sending.message_send(membership=alice_membership, conversation=open_conversation, text="Again")
    assert refused.value.code == "unsubscribed"


def test_closed_window_at_the_provider_closes_ours(send, fake_twilio, open_conversation, alice_membership):
    fake_twilio.script(fakes.outside_window())
    message = send()
    assert (message.status, message.error_code) == ("failed", "63016")
    assert "24-hour window is closed" in message.error_reason
    open_conversation.refresh_from_db()
    assert open_conversation.last_inbound_at is None
    with pytest.raises(ServiceError) as refused:
        sending.message_send(membership=alice_membership, conversation=open_conversation, text="Again")
    assert refused.value.code == "outside_window"


def test_rate_limited_send_waits_for_retry_after_then_goes_once(send, fake_twilio):
    fake_twilio.script(fakes.too_many_requests(retry_after=30))
    before = timezone.now()
    message = send()
    assert (message.status, message.attempts, message.error_code) == ("pending", 1, "20429")
    assert message.next_attempt_at >= before + timedelta(seconds=30)
    assert message.lease_until is None

    # Not due yet: a duplicate task does nothing.
    assert sending.message_deliver(message_id=message.pk) is None
    assert len(fake_twilio.requests) == 1

    message = deliver_again(message)
    assert message.status == Message.Status.SENT
    assert (message.error_code, message.error_reason, message.attempts) == ("", "", 2)
    assert len(fake_twilio.requests) == 2 and len(fake_twilio.sent) == 1


def test_server_error_is_retried_with_backoff(send, fake_twilio):
    fake_twilio.script(fakes.server_error())
    before = timezone.now()
    message = send()
    assert message.status == Message.Status.PENDING
    assert before + timedelta(seconds=2) <= message.next_attempt_at <= timezone.now() + timedelta(seconds=2.4)
    message = deliver_again(message)
    assert message.status == Message.Status.SENT
    assert len(fake_twilio.sent) == 1


def test_backoff_grows_and_is_capped():
    assert 2 <= sending.backoff_seconds(1) <= 2.4
    assert 8 <= sending.backoff_seconds(3) <= 9.6
    assert sending.backoff_seconds(20) == 300
    assert sending.backoff_seconds(1, retry_after=45) == 45


def test_gives_up_after_eight_attempts(send, fake_twilio, alice_membership, open_conversation):
    fake_twilio.script(*[fakes.service_unavailable()] * 8)
    message = send()
    for _ in range(7):
        message = deliver_again(message)
    assert message.status == Message.Status.FAILED
    assert message.attempts == 8
    assert message.error_code == "gave_up"
    assert message.error_reason == "Failed to send via WhatsApp: the provider kept failing; please retry later."
    assert len(fake_twilio.requests) == 8


def test_timeout_after_sending_is_unknown_and_never_resent(send, fake_twilio, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.5
    fake_twilio.script(fakes.hang(10))
    try:
        message = send()
    finally:
        fake_twilio.release_hangs()
    assert message.status == Message.Status.UNKNOWN
    assert message.error_code == "timeout"
    assert "may or may not have been sent" in message.error_reason
    assert len(fake_twilio.requests) == 1

    sending.message_deliver(message_id=message.pk)
    sending.outbox_sweep(now=timezone.now() + timedelta(hours=1))
    assert len(fake_twilio.requests) == 1


def test_connection_refused_goes_back_to_pending(send, fake_twilio, settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.TWILIO_API_BASE = f"http://127.0.0.1:{port}"
    message = send()
    assert (message.status, message.attempts, message.error_code) == ("pending", 1, "connection")
    assert message.next_attempt_at > timezone.now()

    settings.TWILIO_API_BASE = fake_twilio.base_url
    message = deliver_again(message)
    assert message.status == Message.Status.SENT
    assert len(fake_twilio.sent) == 1


def test_answer_lost_after_creation_is_unknown(send, fake_twilio):
    fake_twilio.script(fakes.drop(created=True))
    message = send()
    # Twilio has it but the answer was lost: the agent is told, nothing is resent.
    assert (message.status, message.error_code) == ("unknown", "connection_lost")
    sending.outbox_sweep(now=timezone.now() + timedelta(hours=1))
    assert len(fake_twilio.requests) == 1 and len(fake_twilio.sent) == 1


def test_delivering_twice_sends_once(alice_membership, open_conversation, fake_twilio):
    message = queued(alice_membership, open_conversation)
    sending.message_deliver(message_id=message.pk)
    sending.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(fake_twilio.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_send_once(open_conversation, fake_twilio):
    # Autocommit would deliver on commit right away: insert the outbox row directly instead.
    message = factories.MessageFactory(conversation=open_conversation, direction="outbound", status="pending")
    barrier = threading.Barrier(5)

    def work():
        try:
            barrier.wait()
            sending.message_deliver(message_id=message.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(fake_twilio.requests) == 1


def test_no_token_from_the_rate_limiter_waits_without_calling(alice_membership, open_conversation, fake_twilio, settings):
    settings.SEND_RATE_PER_SECOND = 1
    message = queued(alice_membership, open_conversation)
    ratelimit.take(ratelimit.channel_key(open_conversation.channel), rate=1)  # the only token

    wait = sending.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert wait is not None and 0 < wait <= 1
    assert (message.status, message.attempts) == ("pending", 0)
    assert message.next_attempt_at is not None
    assert fake_twilio.requests == []


def test_a_token_due_soon_is_waited_for_in_the_worker(alice_membership, open_conversation, fake_twilio, settings):
    settings.SEND_RATE_PER_SECOND = 20  # a token every 50 ms
    message = queued(alice_membership, open_conversation)
    key = ratelimit.channel_key(open_conversation.channel)
    while ratelimit.take(key, rate=20) == 0:  # empty the bucket
        pass

    assert sending.message_deliver(message_id=message.pk) is None  # no reschedule through the broker
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 1)
    assert len(fake_twilio.requests) == 1


def test_channel_broken_after_queueing_fails_without_calling(alice_membership, open_conversation, fake_twilio, whatsapp):
    message = queued(alice_membership, open_conversation)
    Channel.objects.filter(pk=whatsapp.pk).update(status=Channel.Status.ERROR, status_reason=INVALID_CONFIGURATION)
    sending.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code, message.error_reason) == ("failed", "channel_error", INVALID_CONFIGURATION)
    assert fake_twilio.requests == []


def test_phone_change_sends_to_the_new_number_and_keeps_history(send, fake_twilio, customer, open_conversation):
    first = send(text="Before")
    contact_services.contact_update(contact=customer, phone="+60198765432")
    open_conversation.refresh_from_db()
    second = send(text="After")
    assert [r.param("To") for r in fake_twilio.requests] == ["whatsapp:+60123456789", "whatsapp:+60198765432"]
    assert first.conversation_id == second.conversation_id == open_conversation.pk
    assert Conversation.objects.filter(contact=customer).count() == 1
    assert list(Message.objects.filter(conversation__contact=customer).order_by("pk")) == [first, second]


def test_retry_of_a_failed_message(send, fake_twilio, alice_membership, django_capture_on_commit_callbacks):
    fake_twilio.script(fakes.invalid_to("whatsapp:+60123456789"))
    message = send()
    assert message.status == Message.Status.FAILED
    with django_capture_on_commit_callbacks(execute=True):
        retried = sending.message_retry(membership=alice_membership, message_id=message.pk)
    assert retried.status == Message.Status.PENDING and retried.error_reason == ""
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert len(fake_twilio.sent) == 1 and len(fake_twilio.requests) == 2

    with pytest.raises(ServiceError) as refused:
        sending.message_retry(membership=alice_membership, message_id=message.pk)
    assert refused.value.code == "not_retryable"


def test_retry_rechecks_eligibility(send, fake_twilio, alice_membership, customer):
    fake_twilio.script(fakes.server_error())
    message = send()
    Message.objects.filter(pk=message.pk).update(status=Message.Status.UNKNOWN)
    contact_services.consent_block(contact=customer, kind="whatsapp", reason="blocked")
    with pytest.raises(ServiceError) as refused:
        sending.message_retry(membership=alice_membership, message_id=message.pk)
    assert refused.value.code == "blocked"


def test_retry_of_another_organizations_message_is_not_found(send, fake_twilio, charlie_membership):
    fake_twilio.script(fakes.invalid_to("whatsapp:+60123456789"))
    message = send()
    with pytest.raises(ServiceError) as refused:
        sending.message_retry(membership=charlie_membership, message_id=message.pk)
    assert refused.value.status == 404


@pytest.mark.django_db(transaction=True)
def test_status_that_arrived_before_the_sid_is_applied(alice_membership, open_conversation, fake_twilio, whatsapp):
    """Twilio's callback can beat the API answer: the event waits (deferred) for the SID."""
    release = threading.Event()
    fake_twilio.script(fakes.hang(10, release=release))

    def callback_first():
        try:
            for _ in range(500):
                if fake_twilio.sent:
                    break
                threading.Event().wait(0.01)
            sid = fake_twilio.sent[0]["sid"]
            InboundEvent.objects.create(
                provider="twilio", destination=str(whatsapp.uuid), channel=whatsapp, organization=whatsapp.organization,
                event_id=f"{sid}:delivered", kind="status", ref=sid, state=InboundEvent.State.DEFERRED,
                body={"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": factories.TEST_ACCOUNT_SID},
            )
        finally:
            connection.close()
            release.set()

    thread = threading.Thread(target=callback_first)
    thread.start()
    # Autocommit: the delivery task runs (eagerly) as the send commits.
    message = queued(alice_membership, open_conversation)
    thread.join(10)
    message.refresh_from_db()
    assert message.external_id == fake_twilio.sent[0]["sid"]
    assert message.status == Message.Status.DELIVERED
    assert InboundEvent.objects.get(ref=message.external_id).state == InboundEvent.State.PROCESSED
