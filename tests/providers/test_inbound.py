"""Processing recorded events: contacts, consent, media, locations, statuses, retries."""

from datetime import timedelta

import pytest
import requests
from django.core.files.storage import default_storage
from django.utils import timezone
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from apps.contacts.models import Contact, ContactConsent
from apps.core.errors import ServiceError
from apps.conversations.models import Attachment, Conversation, Message
from apps.conversations import inbound, tasks
from apps.providers import events
from apps.providers.kinds.base import RawEvent
from apps.providers.models import InboundEvent
from tests import factories
from tests.providers.conftest import message_path, new_sid, payload, post_twilio, status_params, status_path


def receive(client, channel, params, capture, path=None):
    with capture(execute=True):
        response = post_twilio(client, path or message_path(channel), params)
    assert response.status_code in (200, 204), response.content
    return response


# Contacts and consent ---------------------------------------------------------------------


def test_an_unknown_number_creates_a_contact_who_wrote_first(
    webhook_client, whatsapp, django_capture_on_commit_callbacks
):
    params = payload("twilio_inbound_text", From="whatsapp:+60174455667", ProfileName="Nurul Huda")
    receive(webhook_client, whatsapp, params, django_capture_on_commit_callbacks)

    contact = Contact.objects.get()
    assert (contact.organization, contact.name, contact.phone) == (whatsapp.organization, "Nurul Huda", "+60174455667")
    assert contact.whatsapp_consent.opted_in and contact.whatsapp_consent.opt_in_source == "contact_wrote_first"
    assert contact.identities.filter(kind="whatsapp", address="+60174455667").exists()
    conversation = Conversation.objects.get()
    assert (conversation.contact, conversation.channel, conversation.status) == (contact, whatsapp, "open")
    assert conversation.messages.get().text == "Hi, is my order on its way?"


def test_a_known_number_finds_the_existing_contact_and_reopens_their_resolved_conversation(
    webhook_client, whatsapp, customer, django_capture_on_commit_callbacks
):
    resolved = factories.ConversationFactory(channel=whatsapp, contact=customer, status="resolved")
    receive(webhook_client, whatsapp, payload("twilio_inbound_text"), django_capture_on_commit_callbacks)
    assert Contact.objects.count() == 1
    resolved.refresh_from_db()
    assert resolved.status == "open"
    assert resolved.messages.count() == 1


def test_the_same_number_in_another_organization_is_another_contact(
    webhook_client, whatsapp, customer, globex, django_capture_on_commit_callbacks
):
    theirs = factories.ChannelFactory(organization=globex)
    receive(webhook_client, theirs, payload("twilio_inbound_text"), django_capture_on_commit_callbacks)
    contact = Contact.objects.get(organization=globex)
    assert contact != customer and contact.phone == customer.phone
    assert not Message.objects.filter(organization=customer.organization).exists()


def test_stop_opts_the_contact_out_and_the_message_is_kept(
    webhook_client, whatsapp, customer, alice, django_capture_on_commit_callbacks
):
    receive(webhook_client, whatsapp, payload("twilio_inbound_text", Body="STOP", OptOutType="STOP"),
            django_capture_on_commit_callbacks)
    customer.refresh_from_db()
    assert not customer.whatsapp_consent.opted_in
    assert customer.whatsapp_consent.opted_out_at is not None
    assert customer.whatsapp_consent.opt_out_reason == "Replied STOP"
    assert not customer.whatsapp_eligible
    message = Message.objects.get()
    assert message.text == "STOP"

    # The agent's next reply is refused before anything reaches Twilio.
    from apps.accounts.models import Membership
    from apps.conversations import sending

    with pytest.raises(ServiceError) as refused:
        sending.message_send(membership=Membership.objects.get(user=alice), conversation=message.conversation,
                             text="Sorry to see you go")
    assert (refused.value.code, refused.value.message) == (
        "unsubscribed", "This contact has unsubscribed from WhatsApp messages."
    )
    assert Message.objects.count() == 1


def test_start_opts_an_unsubscribed_contact_back_in(
    webhook_client, whatsapp, customer, django_capture_on_commit_callbacks
):
    ContactConsent.objects.filter(contact=customer, kind="whatsapp").update(
        opted_in=False, opted_out_at=timezone.now(), opt_out_reason="Replied STOP"
    )
    receive(webhook_client, whatsapp, payload("twilio_inbound_text", Body=" start "), django_capture_on_commit_callbacks)
    customer.refresh_from_db()
    assert customer.whatsapp_consent.opted_in and customer.whatsapp_consent.opted_out_at is None
    assert customer.whatsapp_consent.opt_in_source == "Replied START"
    assert customer.whatsapp_eligible


# Media and locations -----------------------------------------------------------------------


def test_media_is_downloaded_with_the_account_credentials_and_stored(
    webhook_client, whatsapp, customer, fake_twilio, django_capture_on_commit_callbacks
):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048
    url = fake_twilio.add_media(factories.TEST_ACCOUNT_SID, png, "image/png")
    params = payload("twilio_inbound_image", MediaUrl0=url, MediaContentType0="image/png")
    receive(webhook_client, whatsapp, params, django_capture_on_commit_callbacks)

    message = Message.objects.get()
    assert (message.type, message.text) == ("image", "This is the damaged box")
    attachment = message.attachments.get()
    assert (attachment.content_type, attachment.size, attachment.source_url) == ("image/png", len(png), url)
    assert attachment.filename.startswith("ME") and attachment.filename.endswith(".png")
    assert attachment.organization_id == whatsapp.organization_id
    with default_storage.open(attachment.file.name) as stored:
        assert stored.read() == png
    media_requests = [r for r in fake_twilio.requests if "/Media/" in r.path]
    assert len(media_requests) == 1
    assert media_requests[0].auth == (factories.TEST_ACCOUNT_SID, factories.TEST_AUTH_TOKEN)


def test_media_on_a_host_outside_twilio_is_refused_without_a_request_and_the_message_kept(
    webhook_client, whatsapp, customer, fake_twilio, django_capture_on_commit_callbacks
):
    params = payload("twilio_inbound_image", MediaUrl0="http://169.254.169.254/latest/meta-data/iam")
    receive(webhook_client, whatsapp, params, django_capture_on_commit_callbacks)

    message = Message.objects.get()
    assert message.text == "This is the damaged box\n\n[attachment could not be downloaded]"
    assert not Attachment.objects.exists()
    assert fake_twilio.requests == []
    assert InboundEvent.objects.get().state == "processed"


def test_media_that_twilio_no_longer_has_leaves_a_note_for_the_agent(
    webhook_client, whatsapp, customer, fake_twilio, django_capture_on_commit_callbacks
):
    missing = f"{fake_twilio.base_url}/2010-04-01/Accounts/{factories.TEST_ACCOUNT_SID}/Messages/MM{'a' * 32}/Media/ME{'b' * 32}"
    params = payload("twilio_inbound_image", MediaUrl0=missing, Body="")
    receive(webhook_client, whatsapp, params, django_capture_on_commit_callbacks)
    message = Message.objects.get()
    assert message.text == "[attachment could not be downloaded]"
    assert len(fake_twilio.requests) == 1
    assert not Attachment.objects.exists()


def test_media_over_the_size_limit_is_not_stored(
    webhook_client, whatsapp, customer, fake_twilio, settings, django_capture_on_commit_callbacks
):
    settings.MEDIA_DOWNLOAD_MAX_BYTES = 1000
    url = fake_twilio.add_media(factories.TEST_ACCOUNT_SID, b"x" * 5000, "image/jpeg")
    receive(webhook_client, whatsapp, payload("twilio_inbound_image", MediaUrl0=url), django_capture_on_commit_callbacks)
    assert "[attachment could not be downloaded]" in Message.objects.get().text
    assert not Attachment.objects.exists()


def test_a_location_message(webhook_client, whatsapp, customer, django_capture_on_commit_callbacks):
    receive(webhook_client, whatsapp, payload("twilio_inbound_location"), django_capture_on_commit_callbacks)
    message = Message.objects.get()
    assert message.type == "location"
    assert message.location == {"latitude": 3.1578, "longitude": 101.7117, "label": "Petronas Twin Towers"}
    assert message.conversation.last_message_preview == "📍 Location"


# Statuses ----------------------------------------------------------------------------------


def outbound(channel, contact, sid=None, status="sent"):
    conversation = Conversation.objects.filter(channel=channel, contact=contact).first() or factories.ConversationFactory(
        channel=channel, contact=contact
    )
    return factories.MessageFactory(
        conversation=conversation, direction="outbound", status=status, external_id=sid or new_sid(), text="Your order shipped"
    )


def post_status(client, channel, sid, status, capture, error_code=None):
    receive(client, channel, status_params(sid, status, error_code), capture, path=status_path(channel))


def test_a_real_status_callback_from_twilio_moves_the_message_forward(
    webhook_client, whatsapp, customer, fake_twilio, django_capture_on_commit_callbacks
):
    callback = f"https://parley.test{status_path(whatsapp)}"
    created = requests.post(
        f"{fake_twilio.base_url}/2010-04-01/Accounts/{factories.TEST_ACCOUNT_SID}/Messages.json",
        data={"From": factories.TEST_SENDER, "To": f"whatsapp:{customer.phone}", "Body": "Hello",
              "StatusCallback": callback},
        auth=(factories.TEST_ACCOUNT_SID, factories.TEST_AUTH_TOKEN),
        timeout=5,
    )
    assert created.status_code == 201
    sid = created.json()["sid"]
    message = outbound(whatsapp, customer, sid=sid)
    url, params = fake_twilio.status_callback(sid, "delivered")
    assert url == callback
    receive(webhook_client, whatsapp, params, django_capture_on_commit_callbacks, path=status_path(whatsapp))
    message.refresh_from_db()
    assert message.status == "delivered" and message.delivered_at is not None


def test_statuses_move_forward_and_lower_or_equal_ones_are_no_ops(
    webhook_client, whatsapp, customer, django_capture_on_commit_callbacks
):
    message = outbound(whatsapp, customer, status="sending")
    for status, expected in [("sent", "sent"), ("delivered", "delivered"), ("sent", "delivered"),
                             ("read", "read"), ("delivered", "read"), ("failed", "read")]:
        post_status(webhook_client, whatsapp, message.external_id, status, django_capture_on_commit_callbacks)
        message.refresh_from_db()
        assert message.status == expected, (status, expected)
    assert message.sent_at and message.delivered_at and message.read_at and message.failed_at is None
    assert set(InboundEvent.objects.values_list("state", flat=True)) == {"processed"}


def test_failed_with_an_error_code_sets_the_reason(webhook_client, whatsapp, customer, django_capture_on_commit_callbacks):
    message = outbound(whatsapp, customer)
    post_status(webhook_client, whatsapp, message.external_id, "undelivered", django_capture_on_commit_callbacks,
                error_code="63024")
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", "63024")
    assert message.error_reason == "Failed to send via WhatsApp: the recipient is not a valid WhatsApp user."
    assert message.failed_at is not None


def test_failed_21610_opts_the_contact_out(webhook_client, whatsapp, customer, django_capture_on_commit_callbacks):
    message = outbound(whatsapp, customer)
    post_status(webhook_client, whatsapp, message.external_id, "failed", django_capture_on_commit_callbacks,
                error_code="21610")
    customer.refresh_from_db()
    assert not customer.whatsapp_consent.opted_in and customer.whatsapp_consent.opted_out_at is not None
    assert "unsubscribed" in customer.whatsapp_consent.opt_out_reason


def test_failed_63016_closes_the_window_we_thought_was_open(
    webhook_client, whatsapp, customer, django_capture_on_commit_callbacks
):
    message = outbound(whatsapp, customer)
    Conversation.objects.filter(pk=message.conversation_id).update(last_inbound_at=timezone.now() - timedelta(hours=2))
    post_status(webhook_client, whatsapp, message.external_id, "undelivered", django_capture_on_commit_callbacks,
                error_code="63016")
    message.conversation.refresh_from_db()
    assert message.conversation.last_inbound_at is None


STATUS_SEQUENCE = ["sent", "delivered", "read", "sent", "delivered", "queued", "failed"]


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(STATUS_SEQUENCE))
def test_out_of_order_and_repeated_statuses_end_at_the_highest_rank(whatsapp, customer, order):
    message = outbound(whatsapp, customer, status="sending")
    for status in order:
        params = status_params(message.external_id, status)
        ids = events.event_record(channel=whatsapp, events=[RawEvent(
            event_id=f"{message.external_id}:{status}", kind="status", body=params, ref=message.external_id
        )])
        for event_id in ids:
            inbound.event_process(event_id)
    message.refresh_from_db()
    assert message.status == "read"
    # "sent" and "delivered" arrived twice: recorded once each.
    assert InboundEvent.objects.filter(ref=message.external_id).count() == len(set(order))


def test_a_status_for_an_unknown_sid_waits_for_its_message(
    webhook_client, whatsapp, customer, django_capture_on_commit_callbacks
):
    sid = new_sid()
    post_status(webhook_client, whatsapp, sid, "delivered", django_capture_on_commit_callbacks)
    event = InboundEvent.objects.get()
    assert event.state == "deferred"

    # The send's answer arrives: the sender records the SID and applies what was waiting.
    message = outbound(whatsapp, customer, sid=sid)
    assert inbound.deferred_event_ids(channel_id=whatsapp.pk, external_id=sid) == [event.pk]
    inbound.event_process(event.pk)
    message.refresh_from_db()
    event.refresh_from_db()
    assert message.status == "delivered"
    assert event.state == "processed"


def test_the_sweep_applies_deferred_statuses_whose_message_is_known(whatsapp, customer):
    sid = new_sid()
    (event_id,) = events.event_record(channel=whatsapp, events=[RawEvent(
        event_id=f"{sid}:read", kind="status", body=status_params(sid, "read"), ref=sid
    )])
    inbound.event_process(event_id)
    assert inbound.event_ids_due() == []
    message = outbound(whatsapp, customer, sid=sid)
    assert inbound.event_ids_due() == [event_id]
    tasks.inbound_event_sweep_task()
    message.refresh_from_db()
    assert message.status == "read"


# Failures, retries and replays ------------------------------------------------------------


def test_a_processing_failure_leaves_the_event_failed_and_the_sweep_retries_it(whatsapp, customer, settings):
    params = payload("twilio_inbound_text")
    (event_id,) = events.event_record(channel=whatsapp, events=[RawEvent(
        event_id=params["MessageSid"], kind="message", body={**params, "NumMedia": "not a number"}, ref=params["MessageSid"]
    )])
    with pytest.raises(ValueError):
        inbound.event_process(event_id)
    event = InboundEvent.objects.get(pk=event_id)
    assert (event.state, event.attempts) == ("failed", 1)
    assert event.last_error.startswith("ValueError")
    assert factories.TEST_AUTH_TOKEN not in event.last_error
    assert not Message.objects.exists()

    # The task records the failure too and leaves it for the sweep (eager mode: no retry loop).
    tasks.inbound_event_process_task.delay(event_id)
    event.refresh_from_db()
    assert (event.state, event.attempts) == ("failed", 2)

    # Not yet due: the sweep waits a minute.
    assert tasks.inbound_event_sweep_task() == 0
    # The cause is fixed (here: the body corrected) and a minute has passed.
    InboundEvent.objects.filter(pk=event_id).update(body=params, received_at=timezone.now() - timedelta(minutes=2))
    assert tasks.inbound_event_sweep_task() == 1
    event.refresh_from_db()
    assert (event.state, event.attempts, event.last_error) == ("processed", 3, "")
    assert Message.objects.get().text == "Hi, is my order on its way?"
    assert tasks.inbound_event_sweep_task() == 0


def test_the_sweep_gives_up_after_ten_attempts(whatsapp):
    params = payload("twilio_inbound_text")
    (event_id,) = events.event_record(channel=whatsapp, events=[RawEvent(
        event_id=params["MessageSid"], kind="message", body=params, ref=params["MessageSid"]
    )])
    InboundEvent.objects.filter(pk=event_id).update(
        state="failed", attempts=10, received_at=timezone.now() - timedelta(hours=1)
    )
    assert inbound.event_ids_due() == []
    InboundEvent.objects.filter(pk=event_id).update(attempts=9)
    assert inbound.event_ids_due() == [event_id]


def test_a_pending_event_whose_task_was_lost_is_picked_up_by_the_sweep(whatsapp, customer):
    params = payload("twilio_inbound_text")
    # Recorded, but the on-commit task never ran (broker down): still pending.
    (event_id,) = events.event_record(channel=whatsapp, events=[RawEvent(
        event_id=params["MessageSid"], kind="message", body=params, ref=params["MessageSid"]
    )])
    InboundEvent.objects.filter(pk=event_id).update(received_at=timezone.now() - timedelta(minutes=5))
    assert tasks.inbound_event_sweep_task() == 1
    assert Message.objects.count() == 1


def test_processing_twice_is_harmless(whatsapp, customer):
    params = payload("twilio_inbound_text")
    (event_id,) = events.event_record(channel=whatsapp, events=[RawEvent(
        event_id=params["MessageSid"], kind="message", body=params, ref=params["MessageSid"]
    )])
    inbound.event_process(event_id)
    inbound.event_process(event_id)
    assert Message.objects.count() == 1
    assert InboundEvent.objects.get().attempts == 1


def test_replay_reprocesses_a_failed_event_and_refuses_a_processed_one(whatsapp, customer):
    params = payload("twilio_inbound_text")
    (event_id,) = events.event_record(channel=whatsapp, events=[RawEvent(
        event_id=params["MessageSid"], kind="message", body=params, ref=params["MessageSid"]
    )])
    InboundEvent.objects.filter(pk=event_id).update(state="failed", last_error="OperationalError: server closed")
    event = InboundEvent.objects.get(pk=event_id)
    events.event_replay(event)
    event.refresh_from_db()
    assert event.state == "processed" and Message.objects.count() == 1
    with pytest.raises(ServiceError) as refused:
        events.event_replay(event)
    assert refused.value.code == "already_processed"


def test_processing_a_message_from_a_known_contact_costs_a_fixed_number_of_queries(
    whatsapp, customer
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for _ in range(3):
        params = payload("twilio_inbound_text", MessageSid=new_sid())
        (event_id,) = events.event_record(channel=whatsapp, events=[RawEvent(
            event_id=params["MessageSid"], kind="message", body=params, ref=params["MessageSid"]
        )])
        with CaptureQueriesContext(connection) as queries:
            inbound.event_process(event_id)
        counts.append(len(queries))
        if connection.features.has_select_for_update:
            assert any("FOR UPDATE" in query["sql"] for query in queries.captured_queries)
    # The first message creates the identity and the conversation; after that, the same cost.
    assert counts[1] == counts[2] <= 14
    assert Message.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_workers_processing_the_same_media_event_store_one_message_and_one_file(whatsapp, customer, fake_twilio,
                                                                                     settings):
    import threading

    from django.db import connections

    url = fake_twilio.add_media(factories.TEST_ACCOUNT_SID, b"%PDF-1.7 invoice", "application/pdf")
    params = payload("twilio_inbound_image", MediaUrl0=url, MediaContentType0="application/pdf")
    (event_id,) = events.event_record(channel=whatsapp, events=[RawEvent(
        event_id=params["MessageSid"], kind="message", body=params, ref=params["MessageSid"]
    )])
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait(timeout=10)
            inbound.event_process(event_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    message = Message.objects.get()
    assert message.type == "document"
    attachment = message.attachments.get()
    assert attachment.filename.endswith(".pdf")
    stored = [path for path in (settings.MEDIA_ROOT / "attachments").rglob("*") if path.is_file()]
    assert [path.name for path in stored] == [attachment.file.name.rsplit("/", 1)[-1]]
    assert InboundEvent.objects.get().state == "processed"
