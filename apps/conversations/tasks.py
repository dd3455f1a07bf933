"""The conversations' tasks: outbox delivery and its sweep, inbound event processing and its
sweep, read receipts and typing, and enriching new contacts. They take ids, call a service, and
are safe to run twice: a delivery claims its row with a conditional UPDATE, an event is
processed once, a contact with a name is left alone."""

import logging
import random
import threading

from celery import shared_task
from django.conf import settings
from django.db import connection

from apps.conversations import inbound, receipts, sending

log = logging.getLogger(__name__)

PROCESS_MAX_RETRIES = 5


# Outbox ----------------------------------------------------------------------------------------


@shared_task(acks_late=True, ignore_result=True)
def message_deliver_task(message_id: int) -> None:
    wait = sending.message_deliver(message_id=message_id)
    if wait is not None:
        _run_later(message_id, wait)


@shared_task(acks_late=True, ignore_result=True)
def message_deliver_interactive_task(message_id: int) -> None:
    """The same delivery for a send an agent is waiting on: routed to the `interactive` queue
    (settings.CELERY_TASK_ROUTES), so it never waits behind a batch."""
    message_deliver_task(message_id)


@shared_task(ignore_result=True)
def outbox_sweep_task() -> None:
    counts = sending.outbox_sweep()
    if any(counts.values()):
        log.info("outbox sweep: %s", counts)


def _run_later(message_id: int, countdown: float) -> None:
    if not message_deliver_task.app.conf.task_always_eager:
        message_deliver_task.apply_async((message_id,), countdown=countdown)
        return
    if settings.REDIS_URL:
        # Eager Celery next to a real broker (tests): the outbox sweep picks the row up when due.
        return
    # The embedded default has neither broker nor beat: a timer stands in for the countdown.
    timer = threading.Timer(countdown, _deliver_in_thread, args=(message_id,))
    timer.daemon = True
    timer.start()


def _deliver_in_thread(message_id: int) -> None:
    try:
        message_deliver_task.apply(args=(message_id,))
    finally:
        connection.close()


# Inbound ---------------------------------------------------------------------------------------


@shared_task(bind=True, acks_late=True, max_retries=PROCESS_MAX_RETRIES)
def inbound_event_process_task(self, event_id: int) -> None:
    try:
        inbound.event_process(event_id)
    except Exception as exc:
        if self.request.is_eager:
            # Eager Celery would retry synchronously, inside the webhook request; the sweep
            # (or a replay from the admin) tries again later instead. The event records the error.
            log.warning("inbound event %s failed; left for the sweep", event_id)
            return
        # Backoff with jitter: 5 s, 10 s, 20 s … capped at 10 minutes.
        countdown = min(600, 5 * 2**self.request.retries) * random.uniform(0.8, 1.2)
        raise self.retry(exc=exc, countdown=countdown) from None


@shared_task
def inbound_event_sweep_task() -> int:
    """Beat: re-enqueue events whose task was lost or failed, and deferred statuses whose
    message is known by now."""
    ids = inbound.event_ids_due()
    for event_id in ids:
        inbound_event_process_task.delay(event_id)
    if ids:
        log.info("inbound sweep re-enqueued %d event(s)", len(ids))
    return len(ids)


@shared_task(acks_late=True, ignore_result=True)
def contact_enrich_task(contact_id: int, channel_id: int) -> None:
    """A new sender on a channel that knows profiles (Messenger, Instagram): their name and
    picture, once. Safe to run twice (a contact with a name is left alone); a failure is logged
    and leaves the contact as it was, usable."""
    inbound.contact_enrich(contact_id=contact_id, channel_id=channel_id)


# Receipts --------------------------------------------------------------------------------------


@shared_task(ignore_result=True)
def conversation_read_receipt_task(conversation_id: int) -> None:
    receipts.conversation_send_read_receipt(conversation=receipts.conversation_for_receipt(conversation_id))


@shared_task(ignore_result=True)
def conversation_typing_task(conversation_id: int) -> None:
    receipts.conversation_send_typing(conversation=receipts.conversation_for_receipt(conversation_id))
