"""The one place that publishes live events.

Call these after commit (`transaction.on_commit`). Every event carries its ids (what the JSON
events socket forwards) and, for the inbox page, the fragments rendered here once for every
viewer (`live.*_fragments`): consumers only choose a variant and check the member's channels
and list filters, so their work per event is constant and touches no database. A render that
fails or is too large leaves the fragments out and the page fetches them itself. A channel
layer that is down never breaks the write that triggered the event: pages treat frames as
hints and resync.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.conversations.events import CONVERSATION_UPDATED, MESSAGE_CREATED, MESSAGE_STATUS_CHANGED
from apps.inbox import live

log = logging.getLogger(__name__)


def org_group(organization_id: int) -> str:
    return f"org-{organization_id}.inbox"


def conversation_group(conversation_id: int) -> str:
    return f"conversation-{conversation_id}"


def message_created(*, organization_id: int, channel_id: int, conversation_id: int, message_id: int) -> None:
    _send(
        organization_id,
        "inbox.message_created",
        channel_id,
        ids={"conversation_id": conversation_id, "message_id": message_id},
        render=lambda live: live.message_created_fragments(conversation_id=conversation_id, message_id=message_id),
    )


def message_status_changed(
    *, organization_id: int, channel_id: int, conversation_id: int, message_id: int, status: str,
    content: bool = False,
) -> None:
    """`content`: the message itself changed (edited, unsent): its whole bubble is redrawn."""
    _send(
        organization_id,
        "inbox.message_status_changed",
        channel_id,
        ids={"conversation_id": conversation_id, "message_id": message_id, "status": status},
        render=lambda live: live.message_status_fragments(
            conversation_id=conversation_id, message_id=message_id, whole=content
        ),
    )


def conversation_updated(
    *, organization_id: int, channel_id: int, conversation_id: int, after_message: bool = False
) -> None:
    """`after_message`: the update a new message makes. The message's event already carried the
    row to inbox sockets, so nothing is rendered and they skip it; the JSON socket forwards it."""
    _send(
        organization_id,
        "inbox.conversation_updated",
        channel_id,
        ids={"conversation_id": conversation_id, **({"after_message": True} if after_message else {})},
        render=(lambda live: {}) if after_message else (
            lambda live: live.conversation_updated_fragments(conversation_id=conversation_id)
        ),
    )


def publish(event) -> None:
    """The subscriber of `conversations.events`: one committed change, published to the
    organization's sockets with its fragments rendered once."""
    ids = {"organization_id": event.organization_id, "channel_id": event.channel_id,
           "conversation_id": event.conversation_id}
    if event.type == MESSAGE_CREATED:
        message_created(message_id=event.message_id, **ids)
    elif event.type == MESSAGE_STATUS_CHANGED:
        message_status_changed(message_id=event.message_id, status=event.status, content=event.content, **ids)
    elif event.type == CONVERSATION_UPDATED:
        conversation_updated(after_message=event.after_message, **ids)


def access_changed(*, organization_id: int) -> None:
    """A membership or a channel permission changed: open sockets reload what their member sees."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            org_group(organization_id), {"type": "inbox.access_changed", "organization_id": organization_id}
        )
    except Exception:  # noqa: BLE001 - sockets also reload their channels every few minutes
        log.warning("broadcast of access_changed failed", exc_info=True)


def _send(organization_id: int, event_type: str, channel_id: int, *, ids: dict, render) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    event = {"type": event_type, "organization_id": organization_id, "channel_id": channel_id, **ids}
    try:
        event.update(render(live))
    except Exception:  # noqa: BLE001 - without fragments the pages fetch what changed
        log.warning("rendering %s failed; clients will fetch it", event_type, exc_info=True)
    try:
        async_to_sync(layer.group_send)(org_group(organization_id), event)
    except Exception:  # noqa: BLE001 - a dead layer must not undo a committed write
        log.warning("broadcast of %s failed; clients will resync", event_type, exc_info=True)
