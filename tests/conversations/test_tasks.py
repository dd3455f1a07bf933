"""The outbox sweep and the delivery task: lost tasks are sent once, dead workers never resend."""

from datetime import timedelta

from django.utils import timezone

from apps.conversations import sending, tasks
from apps.conversations.models import Message
from tests import factories


def outbox_row(conversation, **fields):
    fields.setdefault("status", "pending")
    return factories.MessageFactory(conversation=conversation, direction="outbound", **fields)


def test_sweep_sends_a_pending_row_whose_task_was_lost(open_conversation, fake_twilio):
    lost = outbox_row(open_conversation, created_at=timezone.now() - timedelta(minutes=1))
    tasks.outbox_sweep_task()
    tasks.outbox_sweep_task()
    lost.refresh_from_db()
    assert lost.status == Message.Status.SENT
    assert len(fake_twilio.requests) == 1


def test_sweep_leaves_fresh_and_not_yet_due_rows_alone(open_conversation, fake_twilio):
    fresh = outbox_row(open_conversation)
    later = outbox_row(open_conversation, created_at=timezone.now() - timedelta(minutes=5),
                       next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert sending.outbox_sweep()["enqueued"] == 0
    assert fake_twilio.requests == []
    assert sending.outbox_sweep(now=timezone.now() + timedelta(minutes=2))["enqueued"] == 2
    fresh.refresh_from_db()
    later.refresh_from_db()
    # The task checks the due time itself: enqueued early, the row still waits for it.
    assert (fresh.status, later.status) == ("sent", "pending")
    assert len(fake_twilio.requests) == 1


def test_worker_died_after_calling_the_provider_is_unknown(open_conversation, fake_twilio):
    now = timezone.now()
    row = outbox_row(open_conversation, status="sending", lease_until=now - timedelta(seconds=1),
                     attempted_at=now - timedelta(minutes=1), attempts=1)
    assert sending.outbox_sweep() == {"enqueued": 0, "requeued": 0, "unknown": 1}
    row.refresh_from_db()
    assert (row.status, row.error_code) == ("unknown", "interrupted")
    assert row.error_reason == sending.INTERRUPTED
    tasks.outbox_sweep_task()
    assert fake_twilio.requests == []


def test_worker_died_before_calling_the_provider_is_sent_once(open_conversation, fake_twilio):
    row = outbox_row(open_conversation, status="sending", lease_until=timezone.now() - timedelta(seconds=1),
                     created_at=timezone.now() - timedelta(minutes=2))
    counts = sending.outbox_sweep()
    assert counts["requeued"] == 1 and counts["enqueued"] == 1
    row.refresh_from_db()
    assert row.status == Message.Status.SENT
    assert len(fake_twilio.requests) == 1


def test_a_live_lease_is_left_alone(open_conversation, fake_twilio):
    row = outbox_row(open_conversation, status="sending", lease_until=timezone.now() + timedelta(minutes=1),
                     attempted_at=timezone.now())
    assert sending.outbox_sweep() == {"enqueued": 0, "requeued": 0, "unknown": 0}
    row.refresh_from_db()
    assert row.status == Message.Status.SENDING


def test_deliver_task_is_safe_to_run_twice(open_conversation, fake_twilio):
    row = outbox_row(open_conversation)
    tasks.message_deliver_task.delay(row.pk)
    tasks.message_deliver_task.delay(row.pk)
    row.refresh_from_db()
    assert row.status == Message.Status.SENT
    assert len(fake_twilio.requests) == 1


def test_deliver_task_ignores_inbound_and_missing_rows(open_conversation, fake_twilio):
    inbound = factories.MessageFactory(conversation=open_conversation, direction="inbound")
    tasks.message_deliver_task.delay(inbound.pk)
    tasks.message_deliver_task.delay(10**9)
    assert fake_twilio.requests == []
