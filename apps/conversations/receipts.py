"""Read receipts and typing indicators sent back to the customer's app (Messenger `mark_seen` /
`typing_on`, WhatsApp Cloud `status: read`), where the channel's kind can (its capabilities).
Best effort: they run in tasks, honour the channel's settings, and a failure is logged, never
shown to anyone as an error.

`conversation_opened` and `conversation_typing` are what the inbox calls; they schedule the
tasks (cheaply: nothing for channels without receipts). The tasks call the `*_send_*` services.
"""

import logging

from apps.contacts import selectors as contact_selectors
from apps.conversations import tasks
from apps.conversations.models import Conversation, Message
from apps.providers import catalog, ratelimit
from apps.providers import services as channel_services
from apps.providers.kinds.base import SendError
from apps.providers.models import Channel

log = logging.getLogger(__name__)

TYPING_EVERY = 5.0  # seconds: Messenger shows "typing" for about 20 s after one indicator
RECEIPT_MEMORY = 7 * 86400.0  # one receipt per customer message, remembered this long


def _allowed(channel: Channel, setting: str, capability: str) -> bool:
    kind = catalog.kind_of(channel.kind)
    return (
        kind is not None
        and getattr(kind.capabilities, capability)
        and channel.status == Channel.Status.ACTIVE
        and channel_services.channel_setting(channel, setting)
    )


def typing_allowed(channel: Channel) -> bool:
    """Whether the agent's typing is shown in the customer's app on this channel."""
    return _allowed(channel, "send_typing_indicators", "typing")


def conversation_opened(*, conversation: Conversation) -> None:
    """An agent opened the conversation: tell the customer's app it was seen (in a task)."""
    if _allowed(conversation.channel, "send_read_receipts", "read_receipts"):
        tasks.conversation_read_receipt_task.delay_on_commit(conversation.pk)


def conversation_typing(*, conversation: Conversation) -> bool:
    """The agent is typing: at most one indicator per conversation every few seconds, shared by
    every web process (Redis). Returns whether one was scheduled."""
    if not typing_allowed(conversation.channel):
        return False
    key = f"typing:{conversation.channel.uuid}:{conversation.pk}"
    if ratelimit.take(key, rate=1 / TYPING_EVERY, capacity=1) > 0:
        return False
    tasks.conversation_typing_task.delay_on_commit(conversation.pk)
    return True


def conversation_send_read_receipt(*, conversation: Conversation | None) -> bool:
    """Mark the customer's latest message read in their app, once per message. True when sent."""
    if conversation is None or not _allowed(conversation.channel, "send_read_receipts", "read_receipts"):
        return False
    channel = conversation.channel
    latest = (
        Message.objects.filter(conversation=conversation, direction=Message.Direction.INBOUND, external_id__isnull=False)
        .order_by("-created_at", "-pk")
        .first()
    )
    if latest is None:
        return False
    # Opening the conversation again, in another tab or by another agent, sends nothing new.
    if ratelimit.take(f"receipt:{channel.uuid}:{latest.external_id}", rate=1 / RECEIPT_MEMORY, capacity=1) > 0:
        return False
    return _best_effort("read receipt", conversation, lambda adapter, to: adapter.mark_read(to=to, external_id=latest.external_id))


def conversation_send_typing(*, conversation: Conversation | None) -> bool:
    if conversation is None or not typing_allowed(conversation.channel):
        return False
    return _best_effort("typing indicator", conversation, lambda adapter, to: adapter.typing(to=to))


def conversation_for_receipt(conversation_id: int) -> Conversation | None:
    return Conversation.objects.select_related("channel", "contact").filter(pk=conversation_id).first()


def _best_effort(what: str, conversation: Conversation, call) -> bool:
    channel = conversation.channel
    to = contact_selectors.contact_address(contact=conversation.contact, policy=catalog.KINDS[channel.kind].policy)
    if not to:
        return False
    try:
        return bool(call(catalog.adapter_for(channel), to))
    except (SendError, LookupError) as exc:
        log.info("%s for conversation %s not sent: %s", what, conversation.pk, getattr(exc, "code", "") or type(exc).__name__)
        return False
