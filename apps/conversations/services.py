"""The one writer of `Conversation` and `Message` (with `inbound.py` and `sending.py`, which
call these): opening conversations, recording messages, moving statuses, applying what a
provider's refusal means, and the conversation's own fields. Every change is announced through
`events` after commit."""

from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from apps.contacts import services as contact_services
from apps.conversations import events
from apps.conversations.models import Conversation, ConversationRead, Message
from apps.core.errors import ServiceError
from apps.providers import catalog
from apps.providers import services as channel_services
from apps.providers.kinds.base import BLOCKED, CONFIGURATION, OPT_OUT, WINDOW_CLOSED

S = Message.Status

# Every move a message's status may make: for each status, the statuses it may be reached from.
# A provider's report (a webhook, the send's answer) only moves forward: pending < sending <
# sent < delivered < read, and `failed` ends a message that was never delivered (a later
# `delivered` or `read` means it arrived after all); equal or lower ranks are no-ops. The outbox
# adds its own moves: the claim (pending → sending), the release (sending → pending: rate
# limited, a transient error, a lost worker), the interrupted send (sending → unknown) and an
# agent's retry (failed or unknown → pending).
TRANSITIONS = {
    S.SENDING: {S.PENDING},
    S.PENDING: {S.SENDING, S.FAILED, S.UNKNOWN},
    S.UNKNOWN: {S.SENDING},
    S.SENT: {S.PENDING, S.SENDING, S.UNKNOWN},
    S.FAILED: {S.PENDING, S.SENDING, S.UNKNOWN, S.SENT},
    S.DELIVERED: {S.PENDING, S.SENDING, S.UNKNOWN, S.SENT, S.FAILED},
    S.READ: {S.PENDING, S.SENDING, S.UNKNOWN, S.SENT, S.FAILED, S.DELIVERED},
}
STATUS_TIMESTAMP = {S.SENT: "sent_at", S.DELIVERED: "delivered_at", S.READ: "read_at", S.FAILED: "failed_at"}
PREVIEW_LENGTH = 120
UNSENT_PREVIEW = "This message was unsent"


# Conversations -------------------------------------------------------------------------------


def conversation_open_for(*, contact, channel, thread: str = "", subject: str = "") -> tuple[Conversation, bool]:
    """The contact's open conversation on this channel (and thread, for kinds with threads): the
    latest one, reopened if it was resolved, or a new one. The `one_open_conversation`
    constraint settles races."""
    thread = thread[:255]
    mine = Conversation.objects.filter(contact=contact, channel=channel, thread=thread)
    open_ = mine.exclude(status=Conversation.Status.RESOLVED)
    conversation = open_.first()
    if conversation:
        return conversation, False
    try:
        with transaction.atomic():
            latest = mine.order_by("-pk").first()
            if latest is not None:
                latest.status = Conversation.Status.OPEN
                latest.save(update_fields=["status", "updated_at"])
                return latest, False
            return (
                Conversation.objects.create(organization_id=contact.organization_id, contact=contact, channel=channel,
                                            thread=thread, subject=subject[:255]),
                True,
            )
    except IntegrityError:
        return open_.get(), False


def conversation_for_thread(*, contact, channel, replies_to=(), reply_token: str = "", thread: str = "",
                            subject: str = "") -> tuple[Conversation, bool]:
    """Where an inbound message belongs: the conversation of the message it answers (a provider
    id this channel recorded) or of the reply address it was sent to, reopened if it was resolved;
    else the contact's conversation of its own thread (`conversation_open_for`). Kinds without
    threads name none of these: one conversation per contact and channel."""
    named = _conversation_named(channel=channel, replies_to=replies_to, reply_token=reply_token)
    if named is None:
        return conversation_open_for(contact=contact, channel=channel, thread=thread, subject=subject)
    if named.status == Conversation.Status.RESOLVED:
        try:
            with transaction.atomic():
                Conversation.objects.filter(pk=named.pk).update(status=Conversation.Status.OPEN, updated_at=timezone.now())
                named.status = Conversation.Status.OPEN
        except IntegrityError:
            # Its contact opened another conversation of the same thread meanwhile: that one.
            return conversation_open_for(contact=named.contact, channel=channel, thread=named.thread), False
    return named, False


def _conversation_named(*, channel, replies_to, reply_token: str) -> Conversation | None:
    if replies_to:
        found = dict(
            Message.objects.filter(channel=channel, external_id__in=list(replies_to)[:50])
            .values_list("external_id", "conversation_id")
        )
        for ref in replies_to:
            if ref in found:
                return Conversation.objects.select_related("contact").get(pk=found[ref])
    if reply_token:
        return conversation_by_reply_token(channel=channel, token=reply_token)
    return None


def conversation_reply_token(conversation: Conversation) -> str:
    """The token of the conversation's reply address (`reply+<token>@<domain>`): its id and a MAC,
    so nobody can write themselves into another conversation."""
    return f"{conversation.pk}-{_reply_mac(conversation.pk, settings.SECRET_KEY)}"


def conversation_by_reply_token(*, channel, token: str) -> Conversation | None:
    pk, _, mac = token.strip().lower().partition("-")
    if not pk.isdigit() or not mac:
        return None
    if not any(constant_time_compare(mac, _reply_mac(pk, key)) for key in [settings.SECRET_KEY,
                                                                          *settings.SECRET_KEY_FALLBACKS]):
        return None
    return Conversation.objects.select_related("contact").filter(pk=int(pk), channel=channel).first()


def _reply_mac(pk, key: str) -> str:
    return salted_hmac("parley.conversations.reply-address", str(pk), secret=key, algorithm="sha256").hexdigest()[:20]


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


@transaction.atomic
def conversation_assign(*, conversation: Conversation, assignee, membership) -> Conversation:
    if assignee is not None and not assignee.memberships.filter(organization_id=conversation.organization_id).exists():
        raise ServiceError("assignee_not_member", "That person is not a member of this organization.", status=404)
    conversation.assignee = assignee
    conversation.save(update_fields=["assignee", "updated_at"])
    events.conversation_changed(conversation)
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
    events.conversation_changed(conversation)
    return conversation


def conversation_mark_read(*, conversation: Conversation, user) -> None:
    now = timezone.now()
    ConversationRead.objects.update_or_create(conversation=conversation, user=user, defaults={"last_read_at": now})


# Messages ------------------------------------------------------------------------------------


def message_record(*, conversation: Conversation, direction: str, external_id: str | None = None,
                   **fields) -> tuple[Message, bool]:
    """Insert a message once: a provider id already recorded on the channel returns that row.
    Inbound messages arrive `received` from the contact; outbound ones recorded here (an echo
    of a send from the provider's own apps) arrive `sent`. Touches the conversation and
    announces the message."""
    if external_id:
        existing = Message.objects.filter(channel_id=conversation.channel_id, external_id=external_id).first()
        if existing:
            return existing, False
    inbound = direction == Message.Direction.INBOUND
    now = timezone.now()
    fields.setdefault("status", S.RECEIVED if inbound else S.SENT)
    fields.setdefault("sender_kind", Message.SenderKind.CONTACT if inbound else Message.SenderKind.AGENT)
    if fields["status"] == S.SENT:
        fields.setdefault("sent_at", now)
    try:
        with transaction.atomic():
            message = Message.objects.create(
                organization_id=conversation.organization_id,
                conversation=conversation,
                channel_id=conversation.channel_id,
                direction=direction,
                external_id=external_id or None,
                created_at=fields.pop("created_at", None) or now,
                **fields,
            )
    except IntegrityError:
        if not external_id:
            raise
        return Message.objects.get(channel_id=conversation.channel_id, external_id=external_id), False
    conversation_touch(conversation=conversation, message=message)
    events.message_created(message)
    return message, True


def message_record_inbound(*, conversation: Conversation, external_id: str, **fields) -> tuple[Message, bool]:
    """Insert an inbound message once; the same provider id again returns the first row."""
    return message_record(conversation=conversation, direction=Message.Direction.INBOUND, external_id=external_id,
                          **fields)


def message_status_apply(
    *,
    message: Message,
    status: str,
    error_code: str = "",
    error_reason: str = "",
    guard: Q | None = None,
    fields: dict | None = None,
    publish: bool = True,
) -> bool:
    """The one way a message's status changes, atomically: only along `TRANSITIONS` (a
    provider's report only moves forward; the outbox's claim, release and retry are listed
    there too), and only while `guard` holds (the outbox's lease). Sets the status's time
    (a message read before we heard it was delivered was delivered then), the error of a
    failure, and any other `fields`. Returns False when the move is not allowed now."""
    now = timezone.now()
    values = {"status": status, **(fields or {})}
    if status in STATUS_TIMESTAMP:
        values[STATUS_TIMESTAMP[status]] = now
    if status == S.FAILED or error_code or error_reason:
        values.update(error_code=error_code[:40], error_reason=error_reason[:500])
    if status in (S.DELIVERED, S.READ):
        values.update(error_code="", error_reason="")
    rows = Message.objects.filter(pk=message.pk, status__in=TRANSITIONS[status])
    if guard is not None:
        rows = rows.filter(guard)
    # A message read before we heard it was delivered was delivered then, at the latest.
    delivered = {"delivered_at": Coalesce(F("delivered_at"), Value(now))} if status == S.READ else {}
    if not rows.update(**values, **delivered):
        return False
    for name, value in values.items():
        setattr(message, name, value)
    if delivered:
        message.delivered_at = message.delivered_at or now
    if publish:
        events.message_changed(message, status)
    return True


def message_react(*, message: Message, emoji: str, by: str = "contact", remove: bool = False) -> bool:
    """A reaction added (or removed) on a message, shown on it. Returns whether it changed."""
    with transaction.atomic():
        locked = Message.objects.select_for_update().filter(pk=message.pk).first()
        if locked is None:
            return False
        reactions = [r for r in locked.reactions or [] if r.get("by") != by]
        if not remove and emoji:
            reactions.append({"emoji": emoji, "by": by, "at": timezone.now().isoformat()})
        if reactions == (locked.reactions or []):
            return False
        Message.objects.filter(pk=message.pk).update(reactions=reactions)
        message.reactions = reactions
        events.message_changed(message)
        return True


def message_unsend(*, message: Message) -> bool:
    """The customer took a message back: the row stays, shown as removed, and the list's
    preview stops showing what they wrote."""
    with transaction.atomic():
        if not Message.objects.filter(pk=message.pk, deleted_at__isnull=True).update(deleted_at=timezone.now()):
            return False
        message.deleted_at = timezone.now()
        Conversation.objects.filter(pk=message.conversation_id, last_message_at=message.created_at).update(
            last_message_preview=UNSENT_PREVIEW
        )
        events.message_changed(message, content=True)
        return True


def message_edit(*, message: Message, text: str, edited_at=None) -> bool:
    """The customer edited a message: the text becomes the new one and the message shows
    "edited". An edit older than the one recorded (a retry arriving late) changes nothing; the
    list's preview follows when this is the conversation's latest message. Returns whether it
    changed."""
    edited_at = edited_at or timezone.now()
    with transaction.atomic():
        changed = (
            Message.objects.filter(pk=message.pk)
            .filter(Q(edited_at__isnull=True) | Q(edited_at__lt=edited_at))
            .update(text=text, edited_at=edited_at)
        )
        if not changed:
            return False
        message.text, message.edited_at = text, edited_at
        latest = Conversation.objects.filter(pk=message.conversation_id, last_message_at=message.created_at)
        if message.deleted_at is None and latest.update(last_message_preview=message_preview(message)):
            events.conversation_of_message_changed(message)
        events.message_changed(message, content=True)
        return True


# What a provider's refusal means -------------------------------------------------------------


def refusal_apply(*, message: Message, effect: str, reason: str) -> None:
    """Carry out what a refusal says about the channel, the contact or the conversation,
    whichever pipeline met it (a refused send, or a failed status callback), and announce it.
    `effect` is one of the effects the kind's classifier names."""
    if not effect:
        return
    channel = message.channel
    kind = catalog.KINDS.get(channel.kind)
    policy = kind.policy if kind is not None else None
    if effect == CONFIGURATION:
        channel_services.channel_credentials_refused(channel=channel, reason=reason)
    elif effect in (OPT_OUT, BLOCKED) and policy is not None:
        contact = message.conversation.contact
        record = contact_services.consent_opt_out if effect == OPT_OUT else contact_services.consent_block
        record(contact=contact, kind=policy.identity_kind, reason=reason)
    elif effect == WINDOW_CLOSED and policy is not None and policy.reply_window is not None:
        # Our record said the window was open; the provider knows better.
        closed = Conversation.objects.filter(
            pk=message.conversation_id, last_inbound_at__gt=timezone.now() - policy.reply_window
        ).update(last_inbound_at=None)
        if closed:
            events.conversation_of_message_changed(message)


def statuses_moved(messages: Iterable[Message], status: str) -> int:
    """Receipts for several messages at once (watermarks): each moves forward on its own."""
    return sum(message_status_apply(message=message, status=status) for message in messages)
