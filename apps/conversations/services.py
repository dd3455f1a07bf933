"""Writes on conversations and messages shared by every channel: opening conversations,
recording inbound messages, and moving message statuses forward. Outbound sending lives in
`sending.py`."""

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.conversations.models import Conversation, ConversationRead, Message
from apps.core.errors import ServiceError
from apps.inbox import broadcast

# A status only moves forward. `failed` ends a message that was never delivered; a later
# `delivered` or `read` means it arrived after all. Equal or lower ranks are no-ops.
STATUS_RANK = {
    Message.Status.PENDING: 0,
    Message.Status.SENDING: 1,
    Message.Status.UNKNOWN: 1,
    Message.Status.SENT: 2,
    Message.Status.FAILED: 3,
    Message.Status.DELIVERED: 4,
    Message.Status.READ: 5,
}
STATUS_TIMESTAMP = {
    Message.Status.SENT: "sent_at",
    Message.Status.DELIVERED: "delivered_at",
    Message.Status.READ: "read_at",
    Message.Status.FAILED: "failed_at",
}
PREVIEW_LENGTH = 120


def conversation_open_for(*, contact, channel) -> tuple[Conversation, bool]:
    """The contact's open conversation on this channel: the latest one, reopened if it was
    resolved, or a new one. The `one_open_conversation` constraint settles races."""
    open_ = Conversation.objects.filter(contact=contact, channel=channel).exclude(status=Conversation.Status.RESOLVED)
    conversation = open_.first()
    if conversation:
        return conversation, False
    try:
        with transaction.atomic():
            latest = Conversation.objects.filter(contact=contact, channel=channel).order_by("-pk").first()
            if latest is not None:
                latest.status = Conversation.Status.OPEN
                latest.save(update_fields=["status", "updated_at"])
                return latest, False
            return (
                Conversation.objects.create(organization_id=contact.organization_id, contact=contact, channel=channel),
                True,
            )
    except IntegrityError:
        return open_.get(), False


def message_preview(message: Message) -> str:
    if message.text:
        return " ".join(message.text.split())[:PREVIEW_LENGTH]
    if message.location:
        return "📍 Location"
    return {"image": "📷 Photo", "audio": "🎤 Audio", "video": "🎬 Video", "template": "Template"}.get(
        message.type, "📎 Attachment"
    )


def conversation_touch(*, conversation: Conversation, message: Message) -> None:
    """Bring the conversation up to date with a new message (list order, preview, window)."""
    fields = {
        "last_message_at": message.created_at,
        "last_message_preview": message_preview(message),
        "updated_at": timezone.now(),
    }
    if message.direction == Message.Direction.INBOUND:
        fields["last_inbound_at"] = message.created_at
    changed = Conversation.objects.filter(pk=conversation.pk)
    # Concurrent messages: the list order never moves backwards.
    changed.filter(Q(last_message_at__isnull=True) | Q(last_message_at__lte=message.created_at)).update(**fields)
    if message.direction == Message.Direction.INBOUND:
        # A customer writing again wakes a snoozed or pending conversation.
        changed.exclude(status=Conversation.Status.OPEN).update(status=Conversation.Status.OPEN)
    for name, value in fields.items():
        setattr(conversation, name, value)


def message_record_inbound(*, conversation: Conversation, external_id: str, **fields) -> tuple[Message, bool]:
    """Insert an inbound message once; the same provider id again returns the first row."""
    existing = Message.objects.filter(channel_id=conversation.channel_id, external_id=external_id).first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            message = Message.objects.create(
                organization_id=conversation.organization_id,
                conversation=conversation,
                channel_id=conversation.channel_id,
                direction=Message.Direction.INBOUND,
                external_id=external_id,
                status=Message.Status.RECEIVED,
                sender_kind=Message.SenderKind.CONTACT,
                created_at=fields.pop("created_at", None) or timezone.now(),
                **fields,
            )
    except IntegrityError:
        return Message.objects.get(channel_id=conversation.channel_id, external_id=external_id), False
    conversation_touch(conversation=conversation, message=message)
    publish_message_created(message)
    return message, True


def message_status_apply(*, message: Message, status: str, error_code: str = "", error_reason: str = "") -> bool:
    """Move a message's status forward, atomically. Returns False for an equal or lower rank."""
    rank = STATUS_RANK[status]
    lower = [s for s, r in STATUS_RANK.items() if r < rank]
    now = timezone.now()
    fields = {"status": status}
    if status in STATUS_TIMESTAMP:
        fields[STATUS_TIMESTAMP[status]] = now
    if status == Message.Status.FAILED:
        fields.update(error_code=error_code[:40], error_reason=error_reason[:500])
    if status in (Message.Status.DELIVERED, Message.Status.READ):
        fields.update(error_code="", error_reason="")
    updated = Message.objects.filter(pk=message.pk, status__in=lower).update(**fields)
    if not updated:
        return False
    for name, value in fields.items():
        setattr(message, name, value)
    publish_message_status(message, status)
    return True


# Live events, published after commit (ids only; see apps/inbox/broadcast.py) ----------------


def _message_ids(message: Message) -> dict:
    return {
        "organization_id": message.organization_id,
        "channel_id": message.channel_id,
        "conversation_id": message.conversation_id,
    }


def publish_message_created(message: Message) -> None:
    ids = _message_ids(message)
    transaction.on_commit(lambda: broadcast.message_created(message_id=message.pk, **ids))
    # For integrations; the inbox's message_created frame already carries the row.
    transaction.on_commit(lambda: broadcast.conversation_updated(**ids, after_message=True))


def publish_message_status(message: Message, status: str | None = None) -> None:
    """A message's status, error or reactions changed: its status area re-renders."""
    ids = _message_ids(message)
    status = status or message.status
    transaction.on_commit(lambda: broadcast.message_status_changed(message_id=message.pk, status=status, **ids))


def publish_conversation_of(message: Message) -> None:
    ids = _message_ids(message)
    transaction.on_commit(lambda: broadcast.conversation_updated(**ids))


def _publish_conversation(conversation: Conversation) -> None:
    ids = {
        "organization_id": conversation.organization_id,
        "channel_id": conversation.channel_id,
        "conversation_id": conversation.pk,
    }
    transaction.on_commit(lambda: broadcast.conversation_updated(**ids))


@transaction.atomic
def conversation_assign(*, conversation: Conversation, assignee, membership) -> Conversation:
    if assignee is not None and not assignee.memberships.filter(organization_id=conversation.organization_id).exists():
        raise ServiceError("assignee_not_member", "That person is not a member of this organization.", status=404)
    conversation.assignee = assignee
    conversation.save(update_fields=["assignee", "updated_at"])
    _publish_conversation(conversation)
    return conversation


@transaction.atomic
def conversation_set_status(*, conversation: Conversation, status: str) -> Conversation:
    if status not in Conversation.Status.values:
        raise ServiceError("invalid_status", "Choose open, pending, snoozed or resolved.")
    if status != Conversation.Status.RESOLVED and conversation.status == Conversation.Status.RESOLVED:
        newer_open = (
            Conversation.objects.filter(contact_id=conversation.contact_id, channel_id=conversation.channel_id)
            .exclude(status=Conversation.Status.RESOLVED)
            .exists()
        )
        if newer_open:
            raise ServiceError("already_open", "This contact already has an open conversation on this channel.", status=409)
    conversation.status = status
    conversation.save(update_fields=["status", "updated_at"])
    _publish_conversation(conversation)
    return conversation


def conversation_mark_read(*, conversation: Conversation, user) -> None:
    now = timezone.now()
    ConversationRead.objects.update_or_create(conversation=conversation, user=user, defaults={"last_read_at": now})
