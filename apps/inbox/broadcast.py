"""The one place that publishes live events. Ids only; consumers load and render what they need.

Call these after commit (`transaction.on_commit`). A channel layer that is down never breaks the
write that triggered the event: pages treat frames as hints and resync.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def org_group(organization_id: int) -> str:
    return f"org-{organization_id}.inbox"


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def message_created(*, organization_id: int, channel_id: int, conversation_id: int, message_id: int) -> None:
    _send(organization_id, "inbox.message_created", channel_id, conversation_id=conversation_id, message_id=message_id)


def message_status_changed(
    *, organization_id: int, channel_id: int, conversation_id: int, message_id: int, status: str
) -> None:
    _send(
        organization_id,
        "inbox.message_status_changed",
        channel_id,
        conversation_id=conversation_id,
        message_id=message_id,
        status=status,
    )


def conversation_updated(*, organization_id: int, channel_id: int, conversation_id: int) -> None:
    _send(organization_id, "inbox.conversation_updated", channel_id, conversation_id=conversation_id)


def _send(organization_id: int, event_type: str, channel_id: int, **ids) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    event = {"type": event_type, "organization_id": organization_id, "channel_id": channel_id, **ids}
    try:
        async_to_sync(layer.group_send)(org_group(organization_id), event)
    except Exception:  # noqa: BLE001 - a dead layer must not undo a committed write
        log.warning("broadcast of %s failed; clients will resync", event_type, exc_info=True)
