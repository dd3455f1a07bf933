"""The outbound pipeline: validate and queue a message (`message_send`), deliver it from the
outbox (`message_deliver`, run by a task), retry on an agent's request, and sweep the outbox.

The `pending` row is the outbox. A delivery claims it (`sending` with a lease), marks it
`attempted_at` (committed) just before the provider is called, then records the outcome. A lease
that expires without that mark goes back to `pending`; with it, to `unknown`: the provider may
have the message and we never send twice blindly.
"""

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import Membership
from apps.contacts import selectors as contact_selectors
from apps.contacts import services as contact_services
from apps.contacts.models import Contact
from apps.conversations import attachments as attachment_services
from apps.conversations import selectors, services, tasks
from apps.conversations.models import Attachment, Conversation, Message
from apps.core import broker
from apps.core.errors import NotFound, ServiceError
from apps.message_templates import selectors as template_selectors
from apps.message_templates import services as template_services
from apps.message_templates.models import MessageTemplate
from apps.providers import ratelimit, registry
from apps.providers import selectors as channel_selectors
from apps.providers import services as channel_services
from apps.providers.adapters.base import (
    OutboundAttachment,
    OutboundMessage,
    PermanentSendError,
    TransientSendError,
    UnknownSendError,
)
from apps.providers.models import Channel
from apps.providers.policies import POLICIES, ChannelPolicy

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_CAP = 300.0  # seconds
# Pending rows without a due time are the sweep's once their task had this long to run.
LOST_TASK_AFTER = timedelta(seconds=30)
GAVE_UP = "Failed to send via {label}: the provider kept failing; please retry later."
INTERRUPTED = "Sending was interrupted; the message may or may not have been sent. Check before retrying."
STATUS_CALLBACK_PATHS = {
    "twilio_whatsapp": "/webhooks/twilio/{uuid}/status/",
    "twilio_sms": "/webhooks/twilio/{uuid}/status/",
}
RETRYABLE = (Message.Status.FAILED, Message.Status.UNKNOWN)


# Reply windows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowState:
    open: bool
    closes_at: datetime | None
    warning: str
    # Open only through a message tag (Messenger / Instagram `HUMAN_AGENT` between 24 h and 7 days).
    tag: str = ""
    refusal: str = ""  # what a refused send says (defaults to the warning)


def reply_window_state(conversation: Conversation | None, policy: ChannelPolicy, *, now=None) -> WindowState:
    """Whether a free-form reply is allowed now. Channels without a window are always open.
    Meta channels have a second, tagged window: open with `tag` set, the banner says so."""
    if policy.reply_window is None:
        return WindowState(open=True, closes_at=None, warning="")
    last_inbound = conversation.last_inbound_at if conversation is not None else None
    closed_refusal = policy.window_closed or policy.window_warning
    if last_inbound is None:
        return WindowState(open=False, closes_at=None, warning=policy.window_warning, refusal=closed_refusal)
    now = now or timezone.now()
    closes_at = last_inbound + policy.reply_window
    if now < closes_at:
        return WindowState(open=True, closes_at=closes_at, warning="")
    if policy.extended_window is not None:
        extended_closes_at = last_inbound + policy.extended_window
        if now < extended_closes_at:
            return WindowState(open=True, closes_at=extended_closes_at, warning=policy.extended_window_note,
                               tag=policy.extended_window_tag)
    return WindowState(open=False, closes_at=closes_at, warning=policy.window_warning, refusal=closed_refusal)


# Validation ----------------------------------------------------------------------------------


def policy_of(channel: Channel) -> ChannelPolicy:
    policy = POLICIES.get(channel.kind)
    if policy is None:
        return ChannelPolicy(label=channel.get_kind_display(), identity_kind=channel.kind, needs_phone=False,
                             needs_opt_in=False, reply_window=None)
    return policy


def contact_refusal(contact: Contact, policy: ChannelPolicy) -> ServiceError | None:
    """Why this contact cannot be messaged on a channel with this policy, or None."""
    if policy.needs_phone and not contact_services.phone_is_valid(contact.phone):
        return ServiceError("no_valid_phone", "Contact has no valid phone")
    if policy.needs_opt_in:
        # Unsubscribing also clears the opt-in: the specific reasons come first.
        if contact.whatsapp_unsubscribed_at is not None:
            return ServiceError("unsubscribed", f"This contact has unsubscribed from {policy.label} messages.")
        if contact.whatsapp_blocked_at is not None:
            return ServiceError("blocked", f"This contact has blocked {policy.label} messages from you.")
        if not contact.whatsapp_opt_in:
            return ServiceError("not_opted_in", f"This contact has not opted in to {policy.label} messages.")
    return None


def channel_refusal(channel: Channel) -> ServiceError | None:
    ready, sentence = channel_services.channel_readiness(channel)
    if ready:
        return None
    code = "channel_error" if channel.status == Channel.Status.ERROR and not (
        channel_services.channel_missing_configuration(channel)
    ) else "channel_not_configured"
    return ServiceError(code, sentence)


def _window_refusal(conversation: Conversation | None, policy: ChannelPolicy) -> ServiceError | None:
    state = reply_window_state(conversation, policy)
    return None if state.open else ServiceError("outside_window", state.refusal or state.warning)


def _attachments_for(*, organization_id: int, attachment_ids: Sequence, policy: ChannelPolicy) -> list[Attachment]:
    ids = list(dict.fromkeys(attachment_ids))
    if len(ids) > policy.max_attachments:
        raise ServiceError(
            "too_many_attachments", f"{policy.label} accepts at most {policy.max_attachments} attachments per message."
        )
    if not all(str(pk).isdigit() for pk in ids):
        raise NotFound("Attachment not found.")
    found = {a.pk: a for a in Attachment.objects.filter(organization_id=organization_id, pk__in=ids)}
    if len(found) != len(ids):
        raise NotFound("Attachment not found.")
    ordered = [found[int(pk)] for pk in ids]
    for attachment in ordered:
        attachment_services.attachment_check(
            policy=policy, filename=attachment.filename, content_type=attachment.content_type, size=attachment.size
        )
        if attachment.message_id is not None:
            raise ServiceError("attachment_in_use", f"{attachment.filename} is already attached to another message.")
    return ordered


def _conversation_for_window(contact: Contact, channel: Channel) -> Conversation | None:
    """The conversation a send to this contact would land in (see conversation_open_for)."""
    conversations = Conversation.objects.filter(contact=contact, channel=channel)
    return (
        conversations.exclude(status=Conversation.Status.RESOLVED).first() or conversations.order_by("-pk").first()
    )


# Sending -------------------------------------------------------------------------------------


def message_send(
    *,
    membership: Membership,
    channel: Channel | None = None,
    contact_id=None,
    conversation: Conversation | None = None,
    text: str = "",
    attachment_ids: Sequence[int] = (),
    client_token: str | None = None,
    template_id: int | None = None,
    template_variables: dict | None = None,
    sender_kind: str = Message.SenderKind.AGENT,
    interactive: bool = False,
) -> Message:
    """Validate and queue an outbound message; delivery runs on commit in a task.

    Either `conversation` (a reply) or `channel` + `contact_id` (start or continue the contact's
    conversation on that channel). A repeated `client_token` returns the first message.
    `interactive`: an agent is waiting on it (the inbox); it is delivered ahead of queued batches.
    """
    organization_id = membership.organization_id
    client_token = (client_token or "").strip()[:100] or None
    if client_token:
        existing = Message.objects.filter(organization_id=organization_id, client_token=client_token).first()
        if existing is not None:
            return existing

    if conversation is not None:
        if conversation.organization_id != organization_id:
            raise NotFound("Conversation not found.")
        channel, contact = conversation.channel, conversation.contact
    else:
        if not contact_id:
            raise ServiceError("no_contact", "Select a contact to send to.")
        if not str(contact_id).isdigit():
            raise NotFound("Contact not found.")
        contact = contact_selectors.contact_get(organization=organization_id, contact_id=contact_id)
        if channel is None:
            raise ServiceError("no_channel", "Choose a channel to send on.")
    # Authorization before any detail about the contact or channel is revealed.
    if channel.organization_id != organization_id or not channel_selectors.channel_list_visible(
        membership=membership
    ).filter(pk=channel.pk).exists():
        raise NotFound("Conversation not found." if conversation is not None else "Channel not found.")

    policy = policy_of(channel)
    refusal = contact_refusal(contact, policy)
    if refusal:
        raise refusal

    text = (text or "").strip()
    if not text and not attachment_ids and not template_id:
        raise ServiceError("no_content", "No content to send")
    template, variables = None, {}
    if template_id:
        template = template_selectors.message_template_get(organization_id=organization_id, template_id=template_id)
        if not template.is_provider_template:
            raise ServiceError(
                "template_not_approved", f"The template “{template.name}” has no approved {policy.label} template id."
            )
        if attachment_ids:
            raise ServiceError("template_with_attachments", "A template message cannot carry attachments.")
        variables = template_services.message_template_variables(template_variables)
        text = template.render(variables)
    elif policy.text_limit is not None and len(text) > policy.text_limit:
        raise ServiceError(
            "text_too_long", f"Messages on {policy.label} can be at most {policy.text_limit} characters."
        )
    files = _attachments_for(organization_id=organization_id, attachment_ids=attachment_ids, policy=policy)

    refusal = channel_refusal(channel)
    if refusal:
        raise refusal
    if template is None:
        window_conversation = conversation if conversation is not None else _conversation_for_window(contact, channel)
        refusal = _window_refusal(window_conversation, policy)
        if refusal:
            raise refusal

    if template is not None:
        message_type = Message.Type.TEMPLATE
    elif files:
        message_type = files[0].category
    else:
        message_type = Message.Type.TEXT

    with transaction.atomic():
        if conversation is None:
            conversation, _ = services.conversation_open_for(contact=contact, channel=channel)
        try:
            with transaction.atomic():
                message = Message.objects.create(
                    organization_id=organization_id,
                    conversation=conversation,
                    channel=channel,
                    direction=Message.Direction.OUTBOUND,
                    type=message_type,
                    text=text,
                    template=(
                        {"id": template.pk, "provider_id": template.provider_template_id, "variables": variables}
                        if template is not None
                        else None
                    ),
                    client_token=client_token,
                    status=Message.Status.PENDING,
                    sender_kind=sender_kind,
                    sender=membership.user if sender_kind == Message.SenderKind.AGENT else None,
                    created_at=timezone.now(),
                )
        except IntegrityError:
            # The same token raced in from a double-click or a retried request: one message.
            existing = (
                Message.objects.filter(organization_id=organization_id, client_token=client_token).first()
                if client_token
                else None
            )
            if existing is None:
                raise
            return existing
        if files:
            claimed = Attachment.objects.filter(pk__in=[f.pk for f in files], message__isnull=True).update(message=message)
            if claimed != len(files):
                raise ServiceError("attachment_in_use", "An attachment is already attached to another message.")
        services.conversation_touch(conversation=conversation, message=message)
        services.publish_message_created(message)
        task = tasks.message_deliver_interactive_task if interactive else tasks.message_deliver_task
        broker.enqueue_on_commit(task, message.pk)
    return message


def message_retry(*, membership: Membership, message_id) -> Message:
    """An agent's explicit retry of a failed or unconfirmed outbound message. For `unknown` it is
    their informed decision: the first attempt may have arrived."""
    message = selectors.message_get(membership=membership, message_id=message_id)
    if message.direction != Message.Direction.OUTBOUND or message.status not in RETRYABLE:
        raise ServiceError("not_retryable", "Only failed or unconfirmed messages can be sent again.")
    channel, contact = message.channel, message.conversation.contact
    policy = policy_of(channel)
    for refusal in (
        contact_refusal(contact, policy),
        channel_refusal(channel),
        None if message.template else _window_refusal(message.conversation, policy),
    ):
        if refusal:
            raise refusal
    with transaction.atomic():
        reset = Message.objects.filter(pk=message.pk, status__in=RETRYABLE).update(
            status=Message.Status.PENDING,
            error_code="",
            error_reason="",
            failed_at=None,
            attempts=0,
            next_attempt_at=None,
            lease_until=None,
            attempted_at=None,
        )
        if not reset:
            raise ServiceError("not_retryable", "Only failed or unconfirmed messages can be sent again.")
        services.publish_message_status(message, Message.Status.PENDING)
        broker.enqueue_on_commit(tasks.message_deliver_task, message.pk)
    message.refresh_from_db()
    return message


# Delivery ------------------------------------------------------------------------------------


def lease_duration() -> timedelta:
    """Longer than any provider call can take (connect + read timeouts), with a margin."""
    return timedelta(seconds=settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT + 30)


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """2, 4, 8 ... seconds (with up to 20% jitter), capped at 5 minutes; never before Retry-After."""
    base = min(BACKOFF_CAP, 2.0 ** max(1, attempts))
    delay = min(BACKOFF_CAP, base * random.uniform(1.0, 1.2))
    return max(delay, float(retry_after or 0))


def message_deliver(*, message_id: int) -> float | None:
    """Deliver one outbox row. Returns seconds after which the task should run again, or None.

    Safe to run twice and concurrently: only the worker whose conditional UPDATE claims the row
    sends, and the provider is called outside any transaction.
    """
    now = timezone.now()
    lease_until = now + lease_duration()
    claimed = (
        Message.objects.filter(pk=message_id, direction=Message.Direction.OUTBOUND, status=Message.Status.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(status=Message.Status.SENDING, lease_until=lease_until, attempted_at=None)
    )
    if not claimed:
        return None
    message = Message.objects.select_related("channel", "conversation__contact").get(pk=message_id)
    mine = Message.objects.filter(pk=message_id, status=Message.Status.SENDING, lease_until=lease_until)
    channel, contact = message.channel, message.conversation.contact
    policy = policy_of(channel)

    # The channel or the contact may have changed since the message was queued.
    refusal = channel_refusal(channel) or contact_refusal(contact, policy)
    if refusal:
        _finish(message, mine, Message.Status.FAILED, error_code=refusal.code, error_reason=refusal.message)
        return None

    wait = _token_wait(ratelimit.channel_key(channel))
    if wait > 0:
        mine.update(status=Message.Status.PENDING, lease_until=None, next_attempt_at=now + timedelta(seconds=wait))
        return wait

    try:
        outbound = _outbound(message, channel, contact, policy)
        adapter = registry.adapter_for(channel)
    except Exception:  # noqa: BLE001 - the provider was not called; say so instead of looping
        log.exception("message %s could not be prepared for sending", message_id)
        _finish(message, mine, Message.Status.FAILED, error_code="internal",
                error_reason=f"Failed to send via {policy.label}: the message could not be prepared.")
        return None

    # Committed before the call: from here a lost worker means "unknown", never a resend.
    if not mine.update(attempted_at=timezone.now(), attempts=message.attempts + 1):
        return None
    # Only now, with a token: a message waiting for the rate limiter is not shown as sending.
    services.publish_message_status(message, Message.Status.SENDING)
    attempts = message.attempts + 1
    try:
        result = adapter.send(outbound)
    except PermanentSendError as exc:
        _record_permanent(message, mine, channel, contact, policy, exc)
        return None
    except TransientSendError as exc:
        if attempts >= MAX_ATTEMPTS:
            _finish(message, mine, Message.Status.FAILED, error_code="gave_up", error_reason=GAVE_UP.format(label=policy.label))
            return None
        delay = backoff_seconds(attempts, exc.retry_after)
        if not mine.update(
            status=Message.Status.PENDING,
            lease_until=None,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            # Kept while pending so people can see why it is waiting; cleared when it goes out.
            error_code=exc.code[:40],
            error_reason=exc.reason[:500],
        ):
            return None
        services.publish_message_status(message, Message.Status.PENDING)
        return delay
    except UnknownSendError as exc:
        _finish(message, mine, Message.Status.UNKNOWN, error_code=exc.code or "unknown", error_reason=exc.reason)
        return None
    except Exception as exc:  # noqa: BLE001 - a bug after the request may have gone out
        log.exception("message %s: unexpected error while sending", message_id)
        _finish(message, mine, Message.Status.UNKNOWN, error_code="unexpected",
                error_reason=f"Sending via {policy.label} failed unexpectedly ({type(exc).__name__}); "
                             "the message may or may not have been sent.")
        return None
    _record_sent(message, channel, result.external_id)
    return None


def _token_wait(key: str) -> float:
    """Take a token from the sender's bucket, sleeping for it when it is due soon. Returns 0.0
    when taken, else the (longer) wait: the task runs again later instead of holding a worker.
    A Celery countdown goes through the broker's ETA handling: slow and bursty for short waits."""
    deadline = time.monotonic() + settings.SEND_RATE_MAX_SLEEP
    wait = ratelimit.take(key)
    while 0 < wait and time.monotonic() + wait <= deadline:
        time.sleep(wait)
        wait = ratelimit.take(key)
    return wait


def _outbound(message: Message, channel: Channel, contact: Contact, policy: ChannelPolicy) -> OutboundMessage:
    if policy.needs_phone:
        to = contact.phone
    else:
        identity = contact.identities.filter(kind=policy.identity_kind).order_by("-pk").first()
        to = identity.address if identity else ""
    template = message.template or {}
    path = STATUS_CALLBACK_PATHS.get(channel.kind)
    # Meta: between 24 h and 7 days a reply is only allowed with the human agent tag.
    tag = "" if template else reply_window_state(message.conversation, policy).tag
    return OutboundMessage(
        to=to,
        text="" if template else message.text,
        attachments=tuple(
            OutboundAttachment(
                url=attachment_services.attachment_public_url(a), content_type=a.content_type, filename=a.filename
            )
            for a in message.attachments.order_by("pk")
        ),
        template_id=template.get("provider_id", ""),
        template_variables=template.get("variables") or {},
        status_callback=settings.PUBLIC_BASE_URL + path.format(uuid=channel.uuid) if path else "",
        idempotency_key=f"parley-message-{message.pk}",
        tag=tag,
        template_language=_template_language(template),
    )


def _template_language(template: dict) -> str:
    """WhatsApp Cloud names a template by name and language; the language stays on the template."""
    if not template.get("id"):
        return ""
    return (
        MessageTemplate.objects.filter(pk=template["id"]).values_list("language", flat=True).first() or ""
    )


def _record_sent(message: Message, channel: Channel, external_id: str) -> None:
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(external_id=external_id or None, lease_until=None,
                                                     error_code="", error_reason="")
        message.external_id = external_id
        services.message_status_apply(message=message, status=Message.Status.SENT)
    if not external_id:
        return
    from apps.providers import inbound

    # Statuses that arrived before we knew the provider id wait for it.
    for event_id in inbound.deferred_event_ids(channel_id=channel.pk, external_id=external_id):
        try:
            inbound.event_process(event_id)
        except Exception:  # noqa: BLE001 - the inbound sweep retries it
            log.exception("deferred event %s could not be applied", event_id)


def _record_permanent(message, mine, channel, contact, policy, exc: PermanentSendError) -> None:
    with transaction.atomic():
        _finish(message, mine, Message.Status.FAILED, error_code=exc.code or "refused", error_reason=exc.reason)
        if exc.effect == "configuration":
            channel_services.channel_mark_error(channel=channel, reason=exc.reason)
        elif exc.effect == "opted_out":
            contact_services.contact_whatsapp_opt_out(contact=contact, reason=exc.reason)
        elif exc.effect == "blocked":
            contact_services.contact_whatsapp_block(contact=contact, reason=exc.reason)
        elif exc.effect == "window" and policy.reply_window is not None:
            # Our record said the window was open; the provider knows better.
            closed = Conversation.objects.filter(
                pk=message.conversation_id, last_inbound_at__gt=timezone.now() - policy.reply_window
            ).update(last_inbound_at=None)
            if closed:
                services.publish_conversation_of(message)


def _finish(message: Message, mine, status: str, *, error_code: str = "", error_reason: str = "") -> bool:
    """Leave `sending` for a final status, only if this worker still holds the claim."""
    now = timezone.now()
    fields = {"status": status, "lease_until": None, "error_code": error_code[:40], "error_reason": error_reason[:500]}
    if status == Message.Status.FAILED:
        fields["failed_at"] = now
    with transaction.atomic():
        if not mine.update(**fields):
            return False
        for name, value in fields.items():
            setattr(message, name, value)
        services.publish_message_status(message, status)
    return True


# Outbox sweep --------------------------------------------------------------------------------


def outbox_sweep(*, now=None, limit: int = 500) -> dict[str, int]:
    """Recover what a lost task or a dead worker left behind. Returns counts for the log."""
    now = now or timezone.now()
    expired = Message.objects.filter(
        direction=Message.Direction.OUTBOUND, status=Message.Status.SENDING, lease_until__lt=now
    )
    requeued = unknown = 0
    for row in expired.values("pk", "organization_id", "channel_id", "conversation_id", "attempted_at")[:limit]:
        still = Message.objects.filter(pk=row["pk"], status=Message.Status.SENDING, lease_until__lt=now)
        probe = Message(pk=row["pk"], organization_id=row["organization_id"], channel_id=row["channel_id"],
                        conversation_id=row["conversation_id"])
        if row["attempted_at"] is None:
            # The worker died before calling the provider: sending again is safe.
            if still.filter(attempted_at__isnull=True).update(status=Message.Status.PENDING, lease_until=None,
                                                              next_attempt_at=now):
                requeued += 1
                services.publish_message_status(probe, Message.Status.PENDING)
        elif still.exclude(attempted_at__isnull=True).update(
            status=Message.Status.UNKNOWN, lease_until=None, error_code="interrupted", error_reason=INTERRUPTED
        ):
            unknown += 1
            services.publish_message_status(probe, Message.Status.UNKNOWN)

    due = (
        Message.objects.filter(direction=Message.Direction.OUTBOUND, status=Message.Status.PENDING)
        .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lt=now - LOST_TASK_AFTER))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    enqueued = 0
    for pk in list(due):
        # The sweep runs outside any transaction (beat): each row is already committed.
        tasks.message_deliver_task.delay(pk)
        enqueued += 1
    return {"enqueued": enqueued, "requeued": requeued, "unknown": unknown}
