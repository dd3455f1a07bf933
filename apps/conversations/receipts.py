"""Read receipts and typing indicators sent back to the customer's app (Messenger `mark_seen` /
`typing_on`, WhatsApp Cloud `status: read`). Best effort: they run in tasks, honour the channel's
settings, and a failure is logged, never shown to anyone as an error.

`conversation_opened` and `conversation_typing` are what the inbox calls; they schedule the
tasks (cheaply: nothing for channels without receipts). The tasks call the `*_send_*` services.
"""

import logging

from apps.conversations import tasks
from apps.conversations.models import Conversation, Message
from apps.providers import ratelimit, registry
from apps.providers.adapters.base import SendError
from apps.providers.models import Channel
from apps.providers.policies import policy_for

log = logging.getLogger(__name__)

# Channel kinds whose adapters send read receipts / typing indicators.
READ_RECEIPT_KINDS = {"messenger", "instagram", "meta_whatsapp"}
TYPING_KINDS = {"messenger", "instagram"}
TYPING_EVERY = 5.0  # seconds: Messenger shows "typing" for about 20 s after one indicator
RECEIPT_MEMORY = 7 * 86400.0  # one receipt per customer message, remembered this long


def _allowed(channel: Channel, setting: str, kinds: set[str]) -> bool:
    return (
        channel.kind in kinds
        and channel.status == Channel.Status.ACTIVE
        and bool((channel.settings or {}).get(setting, True))
    )


def conversation_opened(*, conversation: Conversation) -> None:
    """An agent opened the conversation: tell the customer's app it was seen (in a task)."""
    if _allowed(conversation.channel, "send_read_receipts", READ_RECEIPT_KINDS):
        tasks.conversation_read_receipt_task.delay_on_commit(conversation.pk)


def conversation_typing(*, conversation: Conversation) -> bool:
    """The agent is typing: at most one indicator per conversation every few seconds, shared by
    every web process (Redis). Returns whether one was scheduled."""
    if not _allowed(conversation.channel, "send_typing_indicators", TYPING_KINDS):
        return False
    key = f"typing:{conversation.channel.uuid}:{conversation.pk}"
    if ratelimit.take(key, rate=1 / TYPING_EVERY, capacity=1) > 0:
        return False
    tasks.conversation_typing_task.delay_on_commit(conversation.pk)
    return True


def conversation_send_read_receipt(*, conversation: Conversation) -> bool:
    """Mark the customer's latest message read in their app, once per message. True when sent."""
    channel = conversation.channel
    if not _allowed(channel, "send_read_receipts", READ_RECEIPT_KINDS):
        return False
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


def conversation_send_typing(*, conversation: Conversation) -> bool:
    if not _allowed(conversation.channel, "send_typing_indicators", TYPING_KINDS):
        return False
    return _best_effort("typing indicator", conversation, lambda adapter, to: adapter.typing(to=to))


def _best_effort(what: str, conversation: Conversation, call) -> bool:
    channel = conversation.channel
    to = _address(conversation)
    if not to:
        return False
    try:
        return bool(call(registry.adapter_for(channel), to))
    except (SendError, LookupError) as exc:
        log.info("%s for conversation %s not sent: %s", what, conversation.pk, getattr(exc, "code", "") or type(exc).__name__)
        return False


def _address(conversation: Conversation) -> str:
    policy = policy_for(conversation.channel.kind)
    contact = conversation.contact
    if policy.needs_phone:
        return contact.phone
    identity = contact.identities.filter(kind=policy.identity_kind).order_by("-pk").first()
    return identity.address if identity else ""
