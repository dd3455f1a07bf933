"""The one seam through which `conversations` tells the layers above what changed.

Writers (services, the inbound and outbound pipelines) call these inside their transaction;
each event reaches the subscribers after commit, once, with ids only (what an integration or a
renderer needs to load it). The inbox subscribes at app-ready time and renders live frames;
nothing here knows who listens. A subscriber that fails is logged, never raised into the write
that committed.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

log = logging.getLogger(__name__)

MESSAGE_CREATED = "message.created"
MESSAGE_STATUS_CHANGED = "message.status_changed"  # its status, error, reactions, an edit or unsend
CONVERSATION_UPDATED = "conversation.updated"


@dataclass(frozen=True)
class Event:
    type: str
    organization_id: int
    channel_id: int
    conversation_id: int
    message_id: int | None = None
    status: str = ""
    # The conversation_updated a new message makes: the message's own event already carries
    # what changed (its row), so renderers may skip it; integrations still hear it.
    after_message: bool = False
    # A message's content changed (the customer edited or unsent it): renderers redraw it whole.
    content: bool = False


_subscribers: list[Callable[[Event], None]] = []


def subscribe(handler: Callable[[Event], None]) -> None:
    if handler not in _subscribers:
        _subscribers.append(handler)


def message_created(message) -> None:
    ids = _ids(message)
    _publish(Event(MESSAGE_CREATED, **ids, message_id=message.pk))
    _publish(Event(CONVERSATION_UPDATED, **ids, after_message=True))


def message_changed(message, status: str | None = None, *, content: bool = False) -> None:
    _publish(Event(MESSAGE_STATUS_CHANGED, **_ids(message), message_id=message.pk, status=status or message.status,
                   content=content))


def conversation_changed(conversation) -> None:
    _publish(
        Event(
            CONVERSATION_UPDATED,
            organization_id=conversation.organization_id,
            channel_id=conversation.channel_id,
            conversation_id=conversation.pk,
        )
    )


def conversation_of_message_changed(message) -> None:
    _publish(Event(CONVERSATION_UPDATED, **_ids(message)))


def _ids(message) -> dict:
    return {
        "organization_id": message.organization_id,
        "channel_id": message.channel_id,
        "conversation_id": message.conversation_id,
    }


def _publish(event: Event) -> None:
    transaction.on_commit(lambda: _dispatch(event))


def _dispatch(event: Event) -> None:
    for handler in list(_subscribers):
        try:
            handler(event)
        except Exception:  # noqa: BLE001 - a dead subscriber must not undo a committed write
            log.warning("subscriber %s failed on %s", getattr(handler, "__name__", handler), event.type, exc_info=True)
