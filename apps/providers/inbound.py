"""The inbound pipeline: accept a verified webhook, record its events once, process each event.

`webhook_accept` verifies the signature on the raw bytes, splits the body into events and records
them in one transaction (`INSERT … ON CONFLICT DO NOTHING`), so a retried or duplicated webhook is a
no-op. Each new event is processed on commit by `tasks.inbound_event_process_task`, which calls
`event_process`: safe to run twice and concurrently.
"""

import logging
import mimetypes
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.text import get_valid_filename

from apps.contacts import services as contact_services
from apps.contacts.services import phone_normalize
from apps.conversations import services as conversation_services
from apps.conversations.models import Attachment, Conversation, Message
from apps.core import broker
from apps.core.errors import ServiceError
from apps.providers import registry, tasks
from apps.contacts.models import ContactIdentity
from apps.providers.adapters.base import (
    InboundMessage,
    MediaRef,
    RawEvent,
    Reaction,
    StatusUpdate,
    Unsend,
    Watermark,
    WebhookRequest,
)
from apps.providers.media import MediaRefused
from apps.providers.models import Channel, InboundEvent
from apps.providers.policies import policy_for

log = logging.getLogger(__name__)

MEDIA_NOT_DOWNLOADED = "[attachment could not be downloaded]"
UNSENT_PREVIEW = "This message was unsent"
# Providers whose webhooks name the channel by its uuid (Meta will route by page / account id).
PROVIDER_OF_KIND = {
    "twilio_whatsapp": "twilio",
    "twilio_sms": "twilio",
    "sandbox": "sandbox",
    "messenger": "meta",
    "instagram": "meta",
    "meta_whatsapp": "meta",
}
META_KINDS = ("messenger", "instagram", "meta_whatsapp")
# New Messenger / Instagram senders get their name and picture from the Graph API.
ENRICHED_KINDS = ("messenger", "instagram")
# Twilio error codes on a failed status that say something about the contact or the window,
# handled like the same refusal on send.
STATUS_EFFECTS = {"21610": "opted_out", "63016": "window", "63032": "blocked"}
SWEEP_AGE = timedelta(minutes=1)
SWEEP_MAX_ATTEMPTS = 10
RETRYABLE = (InboundEvent.State.PENDING, InboundEvent.State.FAILED, InboundEvent.State.DEFERRED)


class SignatureInvalid(Exception):
    """The webhook is not signed by whom it claims; nothing was stored."""


# Webhooks -------------------------------------------------------------------------------


def webhook_accept(*, channel: Channel, request: WebhookRequest, kind: str, adapter=None) -> list[int]:
    """Verify, split and record a webhook for `channel`. Returns the ids of the NEW events.

    Raises SignatureInvalid (answer 403) or ValueError for a body that is not the provider's
    format (answer 400). Returns after the commit: the provider may be told 200 then.
    `adapter`: the channel's adapter when the caller has it already (registry.webhook_target)."""
    adapter = adapter if adapter is not None else registry.adapter_for(channel)
    if not adapter.verify_signature(request):
        raise SignatureInvalid(f"Invalid webhook signature for channel {channel.uuid}")
    events = adapter.split_webhook(request, kind=kind)
    return event_record(channel=channel, events=events)


def provider_for(channel: Channel) -> str:
    return PROVIDER_OF_KIND.get(channel.kind, channel.kind)


@transaction.atomic
def event_record(
    *, channel: Channel | None, events: list[RawEvent], provider: str = "", destination: str = ""
) -> list[int]:
    """Insert the events once (unique per provider, destination and event id); duplicates are
    skipped by the database. Schedules processing of the new ones after commit.

    Meta routes by the id in the body, so its destination is that id (page, Instagram account,
    phone number id). With no channel for it the events are kept, failed with the reason, and
    processed by the sweep (or a replay) once the channel is connected."""
    if not events:
        return []
    now = timezone.now()
    provider = provider or provider_for(channel)
    destination = destination or (channel.address if provider == "meta" else str(channel.uuid))
    rows = [
        InboundEvent(
            provider=provider,
            destination=destination,
            channel=channel,
            organization_id=channel.organization_id if channel is not None else None,
            event_id=event.event_id[:255],
            kind=event.kind,
            ref=event.ref[:255],
            body=event.body,
            received_at=now,
            state=InboundEvent.State.PENDING if channel is not None else InboundEvent.State.FAILED,
            last_error="" if channel is not None else f"No channel is connected for {provider} id {destination}.",
        )
        for event in events
    ]
    new_ids = _insert_ignoring_conflicts(rows)
    if channel is None:
        if new_ids:
            log.warning("%d %s event(s) for unknown destination %s kept unprocessed", len(new_ids), provider, destination)
        return new_ids
    for event_id in new_ids:
        # With the broker down the events are committed anyway and the provider must still hear
        # 200 (quickly); the sweep enqueues pending events later.
        broker.enqueue_on_commit(tasks.inbound_event_process_task, event_id)
    return new_ids


def _insert_ignoring_conflicts(rows: list[InboundEvent]) -> list[int]:
    # bulk_create(ignore_conflicts=True) cannot tell which rows were new; RETURNING can
    # (PostgreSQL, and SQLite >= 3.35), so duplicates are never processed again.
    meta = InboundEvent._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = []
    for row in rows:
        params.extend(f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields)
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row_sql] * len(rows))} "
        f"ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


# Processing -----------------------------------------------------------------------------


def event_process(event_id: int) -> None:
    """Apply one recorded event. Idempotent: a processed event is left alone, a message is
    recorded once, a status only moves forward. On failure the event is marked `failed` with
    the error and the exception propagates, so the task retries."""
    event = InboundEvent.objects.select_related("channel__organization").filter(pk=event_id).first()
    if event is None or event.state == InboundEvent.State.PROCESSED:
        return
    if event.channel is None and event.provider == "meta":
        _attach_meta_channel(event)
    if event.channel is None:
        error = event.last_error if event.provider == "meta" else "The channel of this event was deleted."
        _finish(event, state=InboundEvent.State.FAILED, error=error or "The channel of this event was deleted.")
        return
    try:
        adapter = registry.adapter_for(event.channel)
        normalized = adapter.normalize(event.kind, event.body)
        if isinstance(normalized, InboundMessage) and normalized.echo:
            _process_echo(event, adapter, normalized)
        elif isinstance(normalized, InboundMessage):
            _process_message(event, adapter, normalized)
        elif isinstance(normalized, StatusUpdate):
            _process_status(event, normalized)
        elif isinstance(normalized, Watermark):
            _process_watermark(event, normalized)
        elif isinstance(normalized, Reaction | Unsend):
            _process_reaction_or_unsend(event, normalized)
        else:
            # Nothing for us in it (a status we do not track, a profile ping): done.
            with transaction.atomic():
                if _lock(event):
                    _finish(event, state=InboundEvent.State.PROCESSED)
    except Exception as exc:
        _finish(event, state=InboundEvent.State.FAILED, error=f"{type(exc).__name__}: {exc}")
        log.warning("inbound event %s failed: %s", event.pk, type(exc).__name__)
        raise


def event_replay(event: InboundEvent) -> None:
    """Admin "Replay": process a failed, pending or deferred event again now."""
    if event.state == InboundEvent.State.PROCESSED:
        raise ServiceError("already_processed", "This event was already processed.")
    event_process(event.pk)


def event_ids_due(*, now=None) -> list[int]:
    """Events the sweep should try again: pending (their task was lost) or failed, older than a
    minute and not given up on; and deferred statuses whose message is known by now."""
    now = now or timezone.now()
    stale = InboundEvent.objects.filter(
        state__in=[InboundEvent.State.PENDING, InboundEvent.State.FAILED],
        received_at__lt=now - SWEEP_AGE,
        attempts__lt=SWEEP_MAX_ATTEMPTS,
    )
    known = Message.objects.filter(channel_id=OuterRef("channel_id"), external_id=OuterRef("ref"))
    unblocked = InboundEvent.objects.filter(state=InboundEvent.State.DEFERRED).filter(Exists(known))
    ids = list(stale.order_by("received_at").values_list("pk", flat=True)[:1000])
    ids += list(unblocked.values_list("pk", flat=True)[:1000])
    return ids


def deferred_event_ids(*, channel_id: int, external_id: str) -> list[int]:
    """Statuses that arrived before we knew this provider id, oldest first (the sender calls
    event_process)."""
    return list(
        InboundEvent.objects.filter(channel_id=channel_id, ref=external_id, state=InboundEvent.State.DEFERRED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


@dataclass
class _Stored:
    name: str
    ref: MediaRef
    content_type: str
    size: int
    filename: str


def _process_message(event: InboundEvent, adapter, inbound: InboundMessage) -> None:
    channel = event.channel
    policy = policy_for(channel.kind)
    phone = _e164(inbound.sender) if policy.needs_phone else ""
    contact, contact_created = contact_services.contact_resolve(
        organization=channel.organization,
        kind=policy.identity_kind,
        address=phone or inbound.sender,
        name=inbound.sender_name,
        phone=phone,
    )
    if contact_created and channel.kind in ENRICHED_KINDS:
        # Once, in the background: the contact is usable whatever the Graph API answers.
        tasks.contact_enrich_task.delay_on_commit(contact.pk, channel.pk)
    conversation, _ = conversation_services.conversation_open_for(contact=contact, channel=channel)
    # Media first and outside any transaction: downloads are slow and may fail.
    known = Message.objects.filter(channel=channel, external_id=inbound.external_id).exists()
    stored, failed = ([], 0) if known else _download_media(adapter, channel, inbound.media)
    text = inbound.text
    if failed:
        text = f"{text}\n\n{MEDIA_NOT_DOWNLOADED}" if text else MEDIA_NOT_DOWNLOADED
    try:
        with transaction.atomic():
            if not _lock(event):
                _delete_files(stored)
                return
            message, created = conversation_services.message_record_inbound(
                conversation=conversation,
                external_id=inbound.external_id,
                text=text,
                type=_message_type(inbound),
                location=inbound.location,
                created_at=_provider_time(inbound),
            )
            if created:
                _attach_stored(message, channel, stored)
            else:
                _delete_files(stored)
            if inbound.consent == "opt_out":
                contact_services.contact_whatsapp_opt_out(contact=contact, reason="Replied STOP")
            elif inbound.consent == "opt_in":
                contact_services.contact_whatsapp_opt_in(contact=contact, source="Replied START")
            _finish(event, state=InboundEvent.State.PROCESSED)
    except Exception:
        _delete_files(stored)
        raise


def _process_status(event: InboundEvent, update: StatusUpdate) -> None:
    with transaction.atomic():
        if not _lock(event):
            return
        message = (
            Message.objects.select_related("conversation__contact")
            .filter(channel_id=event.channel_id, external_id=update.external_id, direction=Message.Direction.OUTBOUND)
            .first()
        )
        if message is None:
            # We have not recorded this provider id yet (the send's answer is still on its way):
            # keep the event; the sender applies it when it records the id.
            _finish(event, state=InboundEvent.State.DEFERRED)
            return
        changed = conversation_services.message_status_apply(
            message=message, status=update.status, error_code=update.error_code, error_reason=update.error_reason
        )
        if changed and update.status == Message.Status.FAILED:
            _apply_refusal(message, update, channel=event.channel)
        _finish(event, state=InboundEvent.State.PROCESSED)


def _attach_meta_channel(event: InboundEvent) -> None:
    """A Meta event kept for an unknown page / account / number: its channel may exist now."""
    channel = (
        Channel.objects.select_related("organization")
        .filter(kind__in=META_KINDS, address=event.destination)
        .order_by("pk")
        .first()
    )
    if channel is None:
        return
    InboundEvent.objects.filter(pk=event.pk, channel__isnull=True).update(
        channel=channel, organization_id=channel.organization_id
    )
    event.channel, event.organization_id = channel, channel.organization_id


def _process_echo(event: InboundEvent, adapter, echo: InboundMessage) -> None:
    """A message the page sent. Ours (our app id, or a provider id we already recorded) is
    already in the conversation; one sent from Meta's own apps is shown as outbound."""
    channel = event.channel
    ours = bool(echo.app_id) and echo.app_id == getattr(adapter, "app_id", "")
    if ours or Message.objects.filter(channel=channel, external_id=echo.external_id).exists():
        with transaction.atomic():
            if _lock(event):
                _finish(event, state=InboundEvent.State.PROCESSED)
        return
    policy = policy_for(channel.kind)
    contact, _ = contact_services.contact_resolve(
        organization=channel.organization, kind=policy.identity_kind, address=echo.sender
    )
    conversation, _ = conversation_services.conversation_open_for(contact=contact, channel=channel)
    stored, failed = _download_media(adapter, channel, echo.media)
    text = echo.text
    if failed:
        text = f"{text}\n\n{MEDIA_NOT_DOWNLOADED}" if text else MEDIA_NOT_DOWNLOADED
    try:
        with transaction.atomic():
            if not _lock(event) or Message.objects.filter(channel=channel, external_id=echo.external_id).exists():
                _delete_files(stored)
                if _lock(event):
                    _finish(event, state=InboundEvent.State.PROCESSED)
                return
            now = timezone.now()
            message = Message.objects.create(
                organization_id=channel.organization_id,
                conversation=conversation,
                channel=channel,
                direction=Message.Direction.OUTBOUND,
                type=_message_type(echo),
                text=text,
                external_id=echo.external_id,
                status=Message.Status.SENT,
                # Sent by a person at the page, from Meta's apps: an agent we cannot name.
                sender_kind=Message.SenderKind.AGENT,
                sender=None,
                created_at=_provider_time(echo),
                sent_at=now,
            )
            _attach_stored(message, channel, stored)
            conversation_services.conversation_touch(conversation=conversation, message=message)
            conversation_services.publish_message_created(message)
            _finish(event, state=InboundEvent.State.PROCESSED)
    except Exception:
        _delete_files(stored)
        raise


def _process_watermark(event: InboundEvent, watermark: Watermark) -> None:
    """Messenger / Instagram receipts: every earlier outbound message of the conversation with
    this customer is delivered (or read). Statuses still only move forward."""
    channel = event.channel
    status = Message.Status.DELIVERED if watermark.kind == "delivery" else Message.Status.READ
    with transaction.atomic():
        if not _lock(event):
            return
        contact_id = (
            ContactIdentity.objects.filter(
                organization_id=channel.organization_id,
                kind=policy_for(channel.kind).identity_kind,
                address=watermark.sender,
            )
            .values_list("contact_id", flat=True)
            .first()
        )
        until = watermark.watermark
        if watermark.external_id:
            # Instagram names the message read instead of a time.
            named = Message.objects.filter(channel=channel, external_id=watermark.external_id).first()
            until = named.created_at if named is not None else until
        if contact_id is not None and until is not None:
            earlier = {
                Message.Status.DELIVERED: [Message.Status.SENT],
                Message.Status.READ: [Message.Status.SENT, Message.Status.DELIVERED],
            }[status]
            messages = Message.objects.filter(
                channel=channel,
                conversation__contact_id=contact_id,
                direction=Message.Direction.OUTBOUND,
                status__in=earlier,
                created_at__lte=until,
            ).order_by("created_at", "pk")
            for message in messages:
                conversation_services.message_status_apply(message=message, status=status)
        _finish(event, state=InboundEvent.State.PROCESSED)


def _process_reaction_or_unsend(event: InboundEvent, change: Reaction | Unsend) -> None:
    """A reaction (added or removed) or an unsend, shown on the message it is about. A message
    we never recorded (older than our history) has nothing to show it on."""
    with transaction.atomic():
        if not _lock(event):
            return
        message = (
            Message.objects.select_for_update()
            .filter(channel_id=event.channel_id, external_id=change.external_id)
            .first()
        )
        if message is not None:
            if isinstance(change, Unsend):
                if message.deleted_at is None:
                    message.deleted_at = timezone.now()
                    message.save(update_fields=["deleted_at"])
                    # The list's preview must not keep showing what the customer took back.
                    Conversation.objects.filter(
                        pk=message.conversation_id, last_message_at=message.created_at
                    ).update(last_message_preview=UNSENT_PREVIEW)
                    conversation_services.publish_message_status(message)
            else:
                by = change.by
                reactions = [r for r in message.reactions or [] if r.get("by") != by]
                if change.action != "unreact" and change.emoji:
                    reactions.append({"emoji": change.emoji, "by": by, "at": timezone.now().isoformat()})
                if reactions != (message.reactions or []):
                    message.reactions = reactions
                    message.save(update_fields=["reactions"])
                    conversation_services.publish_message_status(message)
        _finish(event, state=InboundEvent.State.PROCESSED)


def _provider_time(inbound: InboundMessage):
    """When the provider says the message was sent, never later than now (clock skew)."""
    now = timezone.now()
    return min(inbound.sent_at, now) if inbound.sent_at is not None else now


def _attach_stored(message: Message, channel: Channel, stored: list) -> None:
    Attachment.objects.bulk_create(
        Attachment(
            organization_id=channel.organization_id,
            message=message,
            file=item.name,
            source_url=item.ref.url[:1000],
            content_type=item.content_type,
            filename=item.filename,
            size=item.size,
        )
        for item in stored
    )


def _apply_refusal(message: Message, update: StatusUpdate, *, channel: Channel) -> None:
    """A failed delivery that tells us about the contact or the window, like a refused send."""
    effect = STATUS_EFFECTS.get(update.error_code)
    contact = message.conversation.contact
    reason = update.error_reason or f"Provider error {update.error_code}"
    if effect == "opted_out":
        contact_services.contact_whatsapp_opt_out(contact=contact, reason=reason)
    elif effect == "blocked":
        contact_services.contact_whatsapp_block(contact=contact, reason=reason)
    elif effect == "window":
        window = policy_for(channel.kind).reply_window
        if window:
            # Our record said the window was open; WhatsApp says it is closed.
            Conversation.objects.filter(
                pk=message.conversation_id, last_inbound_at__gt=timezone.now() - window
            ).update(last_inbound_at=None)


def _lock(event: InboundEvent) -> bool:
    """Lock the event row for the rest of the transaction; False when another run finished it."""
    state = (
        InboundEvent.objects.select_for_update()
        .filter(pk=event.pk)
        .values_list("state", flat=True)
        .first()
    )
    return state is not None and state != InboundEvent.State.PROCESSED


def _finish(event: InboundEvent, *, state: str, error: str = "") -> None:
    fields = {"state": state, "attempts": F("attempts") + 1, "last_error": error[:2000]}
    if state == InboundEvent.State.PROCESSED:
        fields["processed_at"] = timezone.now()
    # A run that failed never undoes one that succeeded concurrently.
    InboundEvent.objects.filter(pk=event.pk).filter(~Q(state=InboundEvent.State.PROCESSED)).update(**fields)


def _e164(sender: str) -> str:
    try:
        return phone_normalize(sender)
    except ServiceError:
        return ""


def _message_type(inbound: InboundMessage) -> str:
    if inbound.location:
        return Message.Type.LOCATION
    if inbound.media:
        major = (inbound.media[0].content_type or "").split("/")[0]
        return {"image": Message.Type.IMAGE, "audio": Message.Type.AUDIO, "video": Message.Type.VIDEO}.get(
            major, Message.Type.DOCUMENT
        )
    return Message.Type.TEXT


def _download_media(adapter, channel: Channel, media: tuple[MediaRef, ...]) -> tuple[list[_Stored], int]:
    stored, failed = [], 0
    for ref in media:
        try:
            content, content_type = adapter.fetch_media(ref.url, max_bytes=settings.MEDIA_DOWNLOAD_MAX_BYTES)
        except (MediaRefused, OSError) as exc:
            # requests' errors are OSErrors; the message is kept with a note for the agent.
            log.warning("media for channel %s not downloaded: %s", channel.pk, exc)
            failed += 1
            continue
        if content_type in ("", "application/octet-stream") and ref.content_type:
            content_type = ref.content_type
        filename = _filename(ref.url, content_type)
        name = default_storage.save(f"attachments/{timezone.now():%Y/%m}/{filename}", ContentFile(content))
        stored.append(_Stored(name=name, ref=ref, content_type=content_type, size=len(content), filename=filename))
    return stored, failed


def _filename(url: str, content_type: str) -> str:
    stem = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or "attachment"
    extension = mimetypes.guess_extension(content_type) or ""
    if extension and not stem.lower().endswith(extension):
        stem += extension
    return get_valid_filename(stem)[:200] or "attachment"


def _delete_files(stored: list[_Stored]) -> None:
    for item in stored:
        default_storage.delete(item.name)
