from datetime import UTC, datetime

from django.db.models import DateTimeField, Exists, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from apps.accounts.models import Membership
from apps.conversations.models import Conversation, ConversationRead, Message
from apps.core.errors import NotFound
from apps.providers import selectors as channel_selectors

NEVER = datetime(2000, 1, 1, tzinfo=UTC)


def conversation_list(
    *, membership: Membership, status: str = "", channel_id: int | None = None, assignee: str = ""
) -> QuerySet[Conversation]:
    """Conversations on the channels this member may see, newest activity first.

    `assignee`: "me", "unassigned", or a user id. Each row carries `has_unread` for this member.
    """
    conversations = Conversation.objects.filter(
        organization_id=membership.organization_id,
        channel__in=channel_selectors.channel_list_visible(membership=membership),
    )
    if status:
        conversations = conversations.filter(status=status)
    if channel_id:
        conversations = conversations.filter(channel_id=channel_id)
    if assignee == "me":
        conversations = conversations.filter(assignee_id=membership.user_id)
    elif assignee == "unassigned":
        conversations = conversations.filter(assignee__isnull=True)
    elif assignee:
        conversations = conversations.filter(assignee_id=assignee)
    # Evaluated inside the message subquery below: the outer reference is the message's conversation.
    read_at = ConversationRead.objects.filter(conversation=OuterRef("conversation"), user_id=membership.user_id).values(
        "last_read_at"
    )[:1]
    unread = Message.objects.filter(
        conversation=OuterRef("pk"),
        direction=Message.Direction.INBOUND,
        created_at__gt=Coalesce(Subquery(read_at), Value(NEVER, output_field=DateTimeField())),
    )
    return (
        conversations.select_related("contact", "channel", "assignee")
        .annotate(has_unread=Exists(unread))
        .order_by("-last_message_at", "-pk")
    )


def conversation_get(*, membership: Membership, conversation_id) -> Conversation:
    conversation = (
        conversation_list(membership=membership).filter(pk=conversation_id).first()
        if str(conversation_id).isdigit()
        else None
    )
    if conversation is None:
        raise NotFound("Conversation not found.")
    return conversation


def conversation_current(*, contact, channel, within: QuerySet[Conversation] | None = None) -> Conversation | None:
    """The contact's conversation on a channel: the open one, else the latest (the one a send
    would land in, see services.conversation_open_for). `within`: a member's visible list."""
    conversations = (within if within is not None else Conversation.objects).filter(contact=contact, channel=channel)
    return (
        conversations.exclude(status=Conversation.Status.RESOLVED).first() or conversations.order_by("-pk").first()
    )


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    """Messages oldest first; callers paginate by (created_at, id)."""
    return (
        Message.objects.filter(conversation=conversation)
        .select_related("sender")
        .prefetch_related("attachments")
        .order_by("created_at", "pk")
    )


def message_get(*, membership: Membership, message_id) -> Message:
    message = (
        Message.objects.filter(
            pk=message_id,
            organization_id=membership.organization_id,
            channel__in=channel_selectors.channel_list_visible(membership=membership),
        )
        .select_related("conversation", "channel", "conversation__contact")
        .first()
        if str(message_id).isdigit()
        else None
    )
    if message is None:
        raise NotFound("Message not found.")
    return message
