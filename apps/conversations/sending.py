"""The outbound pipeline: validate and queue a message (`message_send`), deliver it from the
outbox (`message_deliver`, run by a task), retry on an agent's request, and sweep the outbox.

The `pending` row is the outbox. A delivery claims it (`sending` with a lease), marks it
`attempted_at` (committed) just before the provider is called, then records the outcome. A lease
that expires without that mark goes back to `pending`; with it, to `unknown`: the provider may
have the message and we never send twice blindly. Every status move goes through
`services.message_status_apply` (one transition table), guarded here by the worker's lease.
"""

import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import Membership
from apps.contacts import selectors as contact_selectors
from apps.contacts.models import Contact
from apps.conversations import attachments as attachment_services
from apps.conversations import events, inbound, selectors, services, tasks
from apps.conversations.models import Attachment, Conversation, Message
from apps.core import broker
from apps.core.errors import NotFound, ServiceError
from apps.core.phones import phone_is_valid
from apps.message_templates import selectors as template_selectors
from apps.message_templates import services as template_services
from apps.providers import catalog, ratelimit
from apps.providers import selectors as channel_selectors
from apps.providers import services as channel_services
from apps.providers.kinds.base import (
    ChannelPolicy,
    OutboundAttachment,
    OutboundMessage,
    PermanentSendError,
    TransientSendError,
    UnknownSendError,
)
from apps.providers.models import Channel

log = logging.getLogger(__name__)

S = Message.Status
MAX_ATTEMPTS = 8
BACKOFF_CAP = 300.0  # seconds
# Pending rows without a due time are the sweep's once their task had this long to run.
LOST_TASK_AFTER = timedelta(seconds=30)
GAVE_UP = "Failed to send via {label}: the provider kept failing; please retry later."
INTERRUPTED = "Sending was interrupted; the message may or may not have been sent. Check before retrying."
RETRYABLE = (S.FAILED, S.UNKNOWN)


# Validation ----------------------------------------------------------------------------------


def policy_of(channel: Channel) -> ChannelPolicy:
    kind = catalog.kind_of(channel.kind)
    if kind is None:
        return ChannelPolicy(label=channel.kind, identity_kind=channel.kind, needs_phone=False, needs_opt_in=False,
                             reply_window=None)
    return kind.policy


def contact_refusal(contact: Contact, policy: ChannelPolicy) -> ServiceError | None:
    """Why this contact cannot be messaged on a channel with this policy, or None. Consent is
    the contact's on this kind of channel only (STOP on SMS says nothing about WhatsApp)."""
    if policy.needs_phone and not phone_is_valid(contact.phone):
        return ServiceError("no_valid_phone", "Contact has no valid phone")

    consent = contact.consent(policy.identity_kind)
    # Unsubscribing also clears the opt-in: the specific reasons come first.
    if consent.opted_out_at is not None:
        return ServiceError("unsubscribed", f"This contact has unsubscribed from {policy.label} messages.")
    if consent.blocked_at is not None:
        return ServiceError("blocked", policy.blocked_refusal or f"This contact has blocked {policy.label} messages from you.")
    if policy.needs_opt_in and not consent.opted_in:
        return ServiceError("not_opted_in", f"This contact has not opted in to {policy.label} messages.")
    return None


def address_refusal(contact: Contact, policy: ChannelPolicy) -> ServiceError | None:
    """A channel not addressed by phone reaches only contacts with an address of its kind (a
    Telegram chat, a PSID: they wrote there first)."""
    if contact_selectors.contact_reachable(contact=contact, policy=policy):
        return None
    return ServiceError(
        "no_address", f"This contact cannot be reached on {policy.label}: no {policy.label} address is known for them."
    )


def channel_refusal(channel: Channel) -> ServiceError | None:
    ready, sentence = channel_services.channel_readiness(channel)
    if ready:
        return None
    code = "channel_error" if channel.status == Channel.Status.ERROR and not (
        channel_services.channel_missing_configuration(channel)
    ) else "channel_not_configured"
    return ServiceError(code, sentence)


def window_refusal(conversation: Conversation | None, policy: ChannelPolicy) -> ServiceError | None:
    state = policy.window(conversation.last_inbound_at if conversation is not None else None)
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


# Sending -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    channel: Channel
    contact: Contact
    conversation: Conversation | None  # None: the contact's conversation on the channel, opened on insert
    policy: ChannelPolicy


@dataclass(frozen=True)
class _Content:
    type: str
    text: str
    template: dict | None
    files: list[Attachment]
    buttons: list[dict]
    subject: str = ""


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
    subject: str = "",
    sender_kind: str = Message.SenderKind.AGENT,
    interactive: bool = False,
    buttons: Sequence[str] = (),
) -> Message:
    """Validate and queue an outbound message; delivery runs on commit in a task.

    Either `conversation` (a reply) or `channel` + `contact_id` (start or continue the contact's
    conversation on that channel; on a kind with threads, email, a new thread with `subject`).
    A repeated `client_token` returns the first message.
    `buttons`: reply buttons' labels under the text, where the channel's policy allows them.
    `interactive`: an agent is waiting on it (the inbox); it is delivered ahead of queued batches.
    Refusals come in a fixed order, each with its stable code and the sentence a person reads:
    who and where (the contact, then whether this member may use the channel: nothing about
    either is revealed otherwise), the contact's eligibility, the content, the channel's state,
    the reply window.
    """
    organization_id = membership.organization_id
    client_token = (client_token or "").strip()[:100] or None
    if client_token:
        existing = Message.objects.filter(organization_id=organization_id, client_token=client_token).first()
        if existing is not None:
            return existing
    target = _send_target(membership=membership, channel=channel, contact_id=contact_id, conversation=conversation)
    refusal = contact_refusal(target.contact, target.policy) or address_refusal(target.contact, target.policy)
    if refusal:
        raise refusal
    content = _send_content(
        organization_id=organization_id, policy=target.policy, text=text, attachment_ids=attachment_ids,
        template_id=template_id, template_variables=template_variables, buttons=buttons,
    )
    content = _with_subject(content, target, subject)
    refusal = channel_refusal(target.channel)
    if refusal:
        raise refusal
    if content.template is None:
        window_conversation = target.conversation or selectors.conversation_current(
            contact=target.contact, channel=target.channel
        )
        refusal = window_refusal(window_conversation, target.policy)
        if refusal:
            raise refusal
    return _send_insert(
        membership=membership, target=target, content=content, client_token=client_token, sender_kind=sender_kind,
        interactive=interactive,
    )


def _send_target(*, membership: Membership, channel, contact_id, conversation) -> _Target:
    """Who and where: the conversation's contact and channel, or the contact on the channel; and
    whether this member may use that channel (checked before anything else is revealed)."""
    organization_id = membership.organization_id
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
    if channel.organization_id != organization_id or not channel_selectors.channel_list_visible(
        membership=membership
    ).filter(pk=channel.pk).exists():
        raise NotFound("Conversation not found." if conversation is not None else "Channel not found.")
    return _Target(channel=channel, contact=contact, conversation=conversation, policy=policy_of(channel))


def _send_content(*, organization_id: int, policy: ChannelPolicy, text: str, attachment_ids: Sequence,
                  template_id, template_variables, buttons: Sequence[str] = ()) -> _Content:
    """What to send: text within the channel's limit, attachments it accepts, reply buttons it
    carries, or an approved template rendered with its variables."""
    text = (text or "").strip()
    if not text and not attachment_ids and not template_id:
        raise ServiceError("no_content", "No content to send")
    template = None
    if template_id:
        found = template_selectors.message_template_get(organization_id=organization_id, template_id=template_id)
        if not found.is_provider_template:
            raise ServiceError(
                "template_not_approved", f"The template “{found.name}” has no approved {policy.label} template id."
            )
        if attachment_ids:
            raise ServiceError("template_with_attachments", "A template message cannot carry attachments.")
        variables = template_services.message_template_variables(template_variables)
        text = found.render(variables)
        template = {"id": found.pk, "provider_id": found.provider_template_id, "variables": variables}
    elif policy.text_limit is not None and len(text) > policy.text_limit:
        raise ServiceError("text_too_long", f"Messages on {policy.label} can be at most {policy.text_limit} characters.")
    files = _attachments_for(organization_id=organization_id, attachment_ids=attachment_ids, policy=policy)
    labels = _buttons_for(policy, buttons, template=template)
    if template is not None:
        message_type = Message.Type.TEMPLATE
    elif files:
        message_type = files[0].category
    else:
        message_type = Message.Type.TEXT
    return _Content(type=message_type, text=text, template=template, files=files,
                    buttons=[{"text": label} for label in labels])


def _buttons_for(policy: ChannelPolicy, buttons: Sequence[str], *, template) -> list[str]:
    """The reply buttons' labels, trimmed, empty ones dropped, each once."""
    labels = list(dict.fromkeys(" ".join(str(label).split()) for label in buttons))
    labels = [label for label in labels if label]
    if not labels:
        return []
    if not policy.max_buttons:
        raise ServiceError("buttons_not_supported", f"{policy.label} messages cannot carry reply buttons.")
    if template is not None:
        raise ServiceError("template_with_buttons", "A template message cannot carry reply buttons.")
    if len(labels) > policy.max_buttons:
        raise ServiceError("too_many_buttons", f"{policy.label} messages can carry at most {policy.max_buttons} buttons.")
    too_long = next((label for label in labels if len(label) > policy.button_text_limit), None)
    if too_long is not None:
        raise ServiceError(
            "button_too_long", f"A button can say at most {policy.button_text_limit} characters: “{too_long[:20]}…”."
        )
    return labels


SUBJECT_MAX = 255


def _with_subject(content: _Content, target: _Target, subject: str) -> _Content:
    """On a kind with threads (email) a message has a subject: a new thread needs one; a reply
    keeps the conversation's unless the agent changed it."""
    if not catalog.KINDS[target.channel.kind].capabilities.threads:
        return content
    subject = " ".join((subject or "").split())
    if len(subject) > SUBJECT_MAX:
        raise ServiceError("subject_too_long", f"A subject can be at most {SUBJECT_MAX} characters.")
    if target.conversation is None and not subject:
        raise ServiceError("no_subject", "Add a subject for the email.")
    return dataclasses.replace(content, subject=subject)


def _send_insert(*, membership: Membership, target: _Target, content: _Content, client_token, sender_kind: str,
                 interactive: bool) -> Message:
    """The outbox row (`pending`), its attachments claimed, the conversation touched; delivery
    enqueued on commit. A client token that raced in twice makes one message."""
    organization_id = membership.organization_id
    with transaction.atomic():
        conversation = target.conversation
        if conversation is None and content.subject:
            # A new email: its own thread (replies name our Message-ID, which finds it again).
            conversation, _ = services.conversation_open_for(
                contact=target.contact, channel=target.channel, thread=f"parley:{uuid.uuid4().hex}",
                subject=content.subject,
            )
        elif conversation is None:
            conversation, _ = services.conversation_open_for(contact=target.contact, channel=target.channel)
        try:
            with transaction.atomic():
                message = Message.objects.create(
                    organization_id=organization_id,
                    conversation=conversation,
                    channel=target.channel,
                    direction=Message.Direction.OUTBOUND,
                    type=content.type,
                    text=content.text,
                    template=content.template,
                    details={"subject": content.subject} if content.subject else None,
                    buttons=content.buttons,
                    client_token=client_token,
                    status=S.PENDING,
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
        if content.files:
            claimed = Attachment.objects.filter(pk__in=[f.pk for f in content.files], message__isnull=True).update(
                message=message
            )
            if claimed != len(content.files):
                raise ServiceError("attachment_in_use", "An attachment is already attached to another message.")
        services.conversation_touch(conversation=conversation, message=message)
        events.message_created(message)
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
        None if message.template else window_refusal(message.conversation, policy),
    ):
        if refusal:
            raise refusal
    with transaction.atomic():
        reset = services.message_status_apply(
            message=message,
            status=S.PENDING,
            guard=Q(status__in=RETRYABLE),
            fields={"error_code": "", "error_reason": "", "failed_at": None, "attempts": 0, "next_attempt_at": None,
                    "lease_until": None, "attempted_at": None},
        )
        if not reset:
            raise ServiceError("not_retryable", "Only failed or unconfirmed messages can be sent again.")
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

    Safe to run twice and concurrently: the claim is a conditional UPDATE, so only one worker
    sends, and the provider is called outside any transaction.
    """
    now = timezone.now()
    lease_until = now + lease_duration()
    probe = Message(pk=message_id)
    claimed = services.message_status_apply(
        message=probe,
        status=S.SENDING,
        guard=Q(direction=Message.Direction.OUTBOUND) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)),
        fields={"lease_until": lease_until, "attempted_at": None},
        # 'sending' is shown once a token is granted and the attempt is committed (below).
        publish=False,
    )
    if not claimed:
        return None
    message = Message.objects.select_related("channel", "conversation__contact").get(pk=message_id)
    mine = Q(lease_until=lease_until)
    channel, contact = message.channel, message.conversation.contact
    policy = policy_of(channel)

    # The channel or the contact may have changed since the message was queued.
    refusal = channel_refusal(channel) or contact_refusal(contact, policy)
    if refusal:
        _finish(message, mine, S.FAILED, error_code=refusal.code, error_reason=refusal.message)
        return None

    wait = _token_wait(ratelimit.channel_key(channel))
    if wait > 0:
        services.message_status_apply(
            message=message, status=S.PENDING, guard=mine, publish=False,
            fields={"lease_until": None, "next_attempt_at": now + timedelta(seconds=wait)},
        )
        return wait

    try:
        outbound = _outbound(message, channel, contact, policy)
        adapter = catalog.adapter_for(channel)
    except Exception:  # noqa: BLE001 - the provider was not called; say so instead of looping
        log.exception("message %s could not be prepared for sending", message_id)
        _finish(message, mine, S.FAILED, error_code="internal",
                error_reason=f"Failed to send via {policy.label}: the message could not be prepared.")
        return None

    # Committed before the call: from here a lost worker means "unknown", never a resend.
    attempts = message.attempts + 1
    if not Message.objects.filter(pk=message_id, status=S.SENDING).filter(mine).update(
        attempted_at=timezone.now(), attempts=attempts
    ):
        return None
    # Only now, with a token: a message waiting for the rate limiter is not shown as sending.
    events.message_changed(message, S.SENDING)
    try:
        result = adapter.send(outbound)
    except PermanentSendError as exc:
        with transaction.atomic():
            if _finish(message, mine, S.FAILED, error_code=exc.code or "refused", error_reason=exc.reason):
                services.refusal_apply(message=message, effect=exc.effect, reason=exc.reason)
        return None
    except TransientSendError as exc:
        if attempts >= MAX_ATTEMPTS:
            _finish(message, mine, S.FAILED, error_code="gave_up", error_reason=GAVE_UP.format(label=policy.label))
            return None
        delay = backoff_seconds(attempts, exc.retry_after)
        # The reason is kept while pending so people can see why it is waiting; cleared when it goes out.
        if not services.message_status_apply(
            message=message, status=S.PENDING, guard=mine, error_code=exc.code, error_reason=exc.reason,
            fields={"lease_until": None, "next_attempt_at": timezone.now() + timedelta(seconds=delay)},
        ):
            return None
        return delay
    except UnknownSendError as exc:
        _finish(message, mine, S.UNKNOWN, error_code=exc.code or "unknown", error_reason=exc.reason)
        return None
    except Exception as exc:  # noqa: BLE001 - a bug after the request may have gone out
        log.exception("message %s: unexpected error while sending", message_id)
        _finish(message, mine, S.UNKNOWN, error_code="unexpected",
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
    template = message.template or {}
    kind = catalog.KINDS[channel.kind]
    hook = kind.webhook(kind.status_callback) if kind.status_callback else None
    # Meta: between 24 h and 7 days a reply is only allowed with the human agent tag.
    tag = "" if template else policy.window(message.conversation.last_inbound_at).tag
    return OutboundMessage(
        to=contact_selectors.contact_address(contact=contact, policy=policy),
        text="" if template else message.text,
        attachments=tuple(
            OutboundAttachment(
                url=attachment_services.attachment_public_url(a), content_type=a.content_type, filename=a.filename,
                read=partial(_attachment_bytes, a),
            )
            for a in message.attachments.order_by("pk")
        ),
        buttons=tuple(str(button.get("text") or "") for button in message.buttons or [] if isinstance(button, dict)),
        **(_thread_of(message) if kind.capabilities.threads else {}),
        template_id=template.get("provider_id", ""),
        template_variables=template.get("variables") or {},
        template_language=_template_language(template),
        status_callback=settings.PUBLIC_BASE_URL + hook.path.format(uuid=channel.uuid) if hook else "",
        idempotency_key=f"parley-message-{message.pk}",
        tag=tag,
    )


def _attachment_bytes(attachment: Attachment) -> bytes:
    with attachment.file.open("rb") as handle:
        return handle.read()


def _thread_of(message: Message) -> dict:
    """A message on a kind with threads (email): its subject (the agent's, else the
    conversation's), the provider ids of the conversation's earlier messages, the conversation's
    reply token and the agent's signature."""
    conversation = message.conversation
    earlier = list(
        Message.objects.filter(conversation=conversation, external_id__isnull=False, created_at__lte=message.created_at)
        .exclude(pk=message.pk)
        .order_by("created_at", "pk")
        .values_list("external_id", flat=True)
    )
    signature = ""
    if message.sender_id is not None:
        signature = (
            Membership.objects.filter(user_id=message.sender_id, organization_id=message.organization_id)
            .values_list("signature", flat=True)
            .first()
            or ""
        )
    return {
        "subject": (message.details or {}).get("subject") or conversation.subject,
        "replies_to": tuple(earlier[-20:]),
        "reply_token": services.conversation_reply_token(conversation),
        "signature": signature,
    }


def _template_language(template: dict) -> str:
    """WhatsApp Cloud names a template by name and language; the language stays on the template."""
    if not template.get("id"):
        return ""
    return template_selectors.message_template_language(template_id=template["id"]) or ""


def _record_sent(message: Message, channel: Channel, external_id: str) -> None:
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(external_id=external_id or None, lease_until=None,
                                                     error_code="", error_reason="")
        message.external_id = external_id
        services.message_status_apply(message=message, status=S.SENT)
    if external_id:
        inbound.deferred_statuses_apply(channel_id=channel.pk, external_id=external_id)


def _finish(message: Message, mine: Q, status: str, *, error_code: str = "", error_reason: str = "") -> bool:
    """Leave `sending` for a final status, only if this worker still holds the claim."""
    return services.message_status_apply(
        message=message, status=status, guard=Q(status=S.SENDING) & mine, error_code=error_code,
        error_reason=error_reason, fields={"lease_until": None},
    )


# Outbox sweep --------------------------------------------------------------------------------


def outbox_sweep(*, now=None, limit: int = 500) -> dict[str, int]:
    """Recover what a lost task or a dead worker left behind. Returns counts for the log."""
    now = now or timezone.now()
    expired = Message.objects.filter(direction=Message.Direction.OUTBOUND, status=S.SENDING, lease_until__lt=now)
    requeued = unknown = 0
    for row in expired.values("pk", "organization_id", "channel_id", "conversation_id", "attempted_at")[:limit]:
        probe = Message(pk=row["pk"], organization_id=row["organization_id"], channel_id=row["channel_id"],
                        conversation_id=row["conversation_id"])
        lapsed = Q(status=S.SENDING, lease_until__lt=now)
        if row["attempted_at"] is None:
            # The worker died before calling the provider: sending again is safe.
            if services.message_status_apply(
                message=probe, status=S.PENDING, guard=lapsed & Q(attempted_at__isnull=True),
                fields={"lease_until": None, "next_attempt_at": now},
            ):
                requeued += 1
        elif services.message_status_apply(
            message=probe, status=S.UNKNOWN, guard=lapsed & Q(attempted_at__isnull=False), error_code="interrupted",
            error_reason=INTERRUPTED, fields={"lease_until": None},
        ):
            unknown += 1

    due = (
        Message.objects.filter(direction=Message.Direction.OUTBOUND, status=S.PENDING)
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
