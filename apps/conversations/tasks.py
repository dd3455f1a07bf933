"""Outbox tasks. They take ids, call `sending`, and are safe to run twice: a delivery claims its
row with a conditional UPDATE, so a duplicate task finds nothing to do."""

import logging
import threading

from celery import shared_task
from django.conf import settings
from django.db import connection

from apps.conversations import sending

log = logging.getLogger(__name__)


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


@shared_task(ignore_result=True)
def conversation_read_receipt_task(conversation_id: int) -> None:
    from apps.conversations import receipts
    from apps.conversations.models import Conversation

    conversation = Conversation.objects.select_related("channel", "contact").filter(pk=conversation_id).first()
    if conversation is not None:
        receipts.conversation_send_read_receipt(conversation=conversation)


@shared_task(ignore_result=True)
def conversation_typing_task(conversation_id: int) -> None:
    from apps.conversations import receipts
    from apps.conversations.models import Conversation

    conversation = Conversation.objects.select_related("channel", "contact").filter(pk=conversation_id).first()
    if conversation is not None:
        receipts.conversation_send_typing(conversation=conversation)
