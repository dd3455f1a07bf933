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
from apps.core.errors import ServiceError
from apps.providers import registry, tasks
from apps.providers.adapters.base import InboundMessage, MediaRef, RawEvent, StatusUpdate, WebhookRequest
from apps.providers.media import MediaRefused
from apps.providers.models import Channel, InboundEvent
from apps.providers.policies import policy_for

log = logging.getLogger(__name__)

MEDIA_NOT_DOWNLOADED = "[attachment could not be downloaded]"
# Providers whose webhooks name the channel by its uuid (Meta will route by page / account id).
PROVIDER_OF_KIND = {"twilio_whatsapp": "twilio", "twilio_sms": "twilio", "sandbox": "sandbox"}
# Twilio error codes on a failed status that say something about the contact or the window,
# handled like the same refusal on send.
STATUS_EFFECTS = {"21610": "opted_out", "63016": "window", "63032": "blocked"}
SWEEP_AGE = timedelta(minutes=1)
SWEEP_MAX_ATTEMPTS = 10
RETRYABLE = (InboundEvent.State.PENDING, InboundEvent.State.FAILED, InboundEvent.State.DEFERRED)


class SignatureInvalid(Exception):
    """The webhook is not signed by whom it claims; nothing was stored."""


# Webhooks -------------------------------------------------------------------------------


def webhook_accept(*, channel: Channel, request: WebhookRequest, kind: str) -> list[int]:
    """Verify, split and record a webhook for `channel`. Returns the ids of the NEW events.

    Raises SignatureInvalid (answer 403) or ValueError for a body that is not the provider's
    format (answer 400). Returns after the commit: the provider may be told 200 then."""
    adapter = registry.adapter_for(channel)
    if not adapter.verify_signature(request):
        raise SignatureInvalid(f"Invalid webhook signature for channel {channel.uuid}")
    events = adapter.split_webhook(request, kind=kind)
    return event_record(channel=channel, events=events)


def provider_for(channel: Channel) -> str:
    return PROVIDER_OF_KIND.get(channel.kind, channel.kind)


@transaction.atomic
def event_record(*, channel: Channel, events: list[RawEvent]) -> list[int]:
    """Insert the events once (unique per provider, destination and event id); duplicates are
    skipped by the database. Schedules processing of the new ones after commit."""
    if not events:
        return []
    now = timezone.now()
    rows = [
        InboundEvent(
            provider=provider_for(channel),
            destination=str(channel.uuid),
            channel=channel,
            organization_id=channel.organization_id,
            event_id=event.event_id[:255],
            kind=event.kind,
            ref=event.ref[:255],
            body=event.body,
            received_at=now,
        )
        for event in events
    ]
    new_ids = _insert_ignoring_conflicts(rows)
    for event_id in new_ids:
        # delay_on_commit, made robust: with the broker down the events are committed anyway and
        # the provider must still hear 200; the sweep enqueues pending events later.
        transaction.on_commit(_enqueuer(event_id), robust=True)
    return new_ids


def _enqueuer(event_id: int):
    def enqueue_inbound_event():
        tasks.inbound_event_process_task.delay(event_id)

    return enqueue_inbound_event


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
    if event.channel is None:
        _finish(event, state=InboundEvent.State.FAILED, error="The channel of this event was deleted.")
        return
    try:
        adapter = registry.adapter_for(event.channel)
        normalized = adapter.normalize(event.kind, event.body)
        if isinstance(normalized, InboundMessage):
            _process_message(event, adapter, normalized)
        elif isinstance(normalized, StatusUpdate):
            _process_status(event, normalized)
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
    """Statuses that arrived before we knew this provider id (the sender calls event_process)."""
    return list(
        InboundEvent.objects.filter(
            channel_id=channel_id, ref=external_id, state=InboundEvent.State.DEFERRED
        ).values_list("pk", flat=True)
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
    contact, _ = contact_services.contact_resolve(
        organization=channel.organization,
        kind=policy.identity_kind,
        address=phone or inbound.sender,
        name=inbound.sender_name,
        phone=phone,
    )
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
            )
            if created:
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
