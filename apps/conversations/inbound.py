"""The inbound pipeline's second half: process a recorded webhook event.

`providers` verifies, splits and records each event once (`providers.events`); this module is
registered there at app-ready time as the processor: each new event is processed on commit by
`tasks.inbound_event_process_task`, which calls `event_process`. Safe to run twice and
concurrently: a processed event is left alone, a message is recorded once (unique per channel
and provider id), a status only moves forward, and a status that arrives before its message is
deferred until the send records the provider id.
"""

import logging
import mimetypes
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.text import get_valid_filename

from apps.contacts import selectors as contact_selectors
from apps.contacts import services as contact_services
from apps.conversations import services, tasks
from apps.conversations.models import Attachment, Message
from apps.core import broker
from apps.core.phones import phone_or_empty
from apps.providers import catalog
from apps.providers.kinds.base import (
    ConsentChange,
    InboundMessage,
    MediaRef,
    MessageEdit,
    Reaction,
    SendError,
    StatusUpdate,
    Unsend,
    Watermark,
)
from apps.providers.media import MediaRefused
from apps.providers.models import Channel, InboundEvent

log = logging.getLogger(__name__)

MEDIA_NOT_DOWNLOADED = "[attachment could not be downloaded]"
SWEEP_AGE = timedelta(minutes=1)
SWEEP_MAX_ATTEMPTS = 10
CHANNEL_DELETED = "The channel of this event was deleted."


class Processor:
    """What `providers.events` hands new events to (registered in ConversationsConfig.ready)."""

    def schedule(self, event_ids: list[int]) -> None:
        for event_id in event_ids:
            # With the broker down the events are committed anyway and the provider must still
            # hear 200 (quickly); the sweep enqueues pending events later.
            broker.enqueue_on_commit(tasks.inbound_event_process_task, event_id)

    def process(self, event_id: int) -> None:
        event_process(event_id)


# Processing -----------------------------------------------------------------------------


def event_process(event_id: int) -> None:
    """Apply one recorded event. Idempotent: a processed event is left alone, a message is
    recorded once, a status only moves forward. On failure the event is marked `failed` with
    the error and the exception propagates, so the task retries."""
    event = InboundEvent.objects.select_related("channel__organization").filter(pk=event_id).first()
    if event is None or event.state == InboundEvent.State.PROCESSED:
        return
    if event.channel is None:
        _attach_channel(event)
    if event.channel is None:
        error = event.last_error if _routes_by_address(event.provider) else CHANNEL_DELETED
        _finish(event, state=InboundEvent.State.FAILED, error=error or CHANNEL_DELETED)
        return
    try:
        adapter = catalog.adapter_for(event.channel)
        normalized = adapter.normalize(event.kind, event.body)
        if isinstance(normalized, InboundMessage):
            processed = _process_message(event, adapter, normalized)
        elif isinstance(normalized, StatusUpdate):
            processed = _process_status(event, normalized)
        elif isinstance(normalized, Watermark):
            processed = _process_watermark(event, normalized)
        elif isinstance(normalized, Reaction | Unsend):
            processed = _process_reaction_or_unsend(event, normalized)
        elif isinstance(normalized, MessageEdit):
            processed = _process_edit(event, normalized)
        elif isinstance(normalized, ConsentChange):
            processed = _process_consent(event, normalized)
        else:
            # Nothing for us in it (a status we do not track, a profile ping, a group's post): done.
            with transaction.atomic():
                processed = _lock(event)
                if processed:
                    _finish(event, state=InboundEvent.State.PROCESSED)
    except Exception as exc:
        _finish(event, state=InboundEvent.State.FAILED, error=f"{type(exc).__name__}: {exc}")
        log.warning("inbound event %s failed: %s", event.pk, type(exc).__name__)
        raise
    if processed:
        _acknowledge(adapter, event)


def _acknowledge(adapter, event: InboundEvent) -> None:
    """Tell the provider the event was handled, where it waits for that (adapter.acknowledge):
    once, after the processing committed; best effort."""
    acknowledge = getattr(adapter, "acknowledge", None)
    if acknowledge is None:
        return
    try:
        acknowledge(event.kind, event.body)
    except Exception as exc:  # noqa: BLE001 - the event is processed; the provider's spinner times out
        log.info("inbound event %s not acknowledged: %s", event.pk, getattr(exc, "code", "") or type(exc).__name__)


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
    """Statuses that arrived before we knew this provider id, oldest first."""
    return list(
        InboundEvent.objects.filter(channel_id=channel_id, ref=external_id, state=InboundEvent.State.DEFERRED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def deferred_statuses_apply(*, channel_id: int, external_id: str) -> None:
    """Apply the statuses that waited for this provider id (the outbox calls this when it
    records the id). A failure is left for the inbound sweep."""
    for event_id in deferred_event_ids(channel_id=channel_id, external_id=external_id):
        try:
            event_process(event_id)
        except Exception:  # noqa: BLE001 - the inbound sweep retries it
            log.exception("deferred event %s could not be applied", event_id)


def contact_enrich(*, contact_id: int, channel_id: int) -> None:
    """Name a new contact from the provider's profile of them (adapter.profile), once."""
    channel = Channel.objects.filter(pk=channel_id).first()
    contact = contact_selectors.contact_unnamed(contact_id=contact_id)
    if channel is None or contact is None or contact.organization_id != channel.organization_id:
        return
    address = contact_selectors.contact_address(contact=contact, policy=catalog.KINDS[channel.kind].policy)
    if not address:
        return
    try:
        profile = catalog.adapter_for(channel).profile(address)
    except (SendError, LookupError) as exc:
        log.warning("contact %s not enriched from channel %s: %s", contact_id, channel_id,
                    getattr(exc, "code", "") or type(exc).__name__)
        return
    contact_services.contact_enrich(contact=contact, name=profile.get("name", ""), avatar_url=profile.get("avatar_url", ""))


@dataclass
class _Stored:
    name: str
    ref: MediaRef
    content_type: str
    size: int
    filename: str


def _process_message(event: InboundEvent, adapter, inbound: InboundMessage) -> bool:
    """A customer's message, or (an echo) one the account sent from the provider's own apps.
    Ours (our app id, or a provider id we already recorded) is already in the conversation.
    Returns whether this run processed the event."""
    channel = event.channel
    if inbound.echo and _our_echo(channel, adapter, inbound):
        with transaction.atomic():
            if not _lock(event):
                return False
            _finish(event, state=InboundEvent.State.PROCESSED)
        return True
    kind = catalog.KINDS[channel.kind]
    policy = kind.policy
    phone = phone_or_empty(inbound.sender) if policy.needs_phone else ""
    contact, contact_created = contact_services.contact_resolve(
        organization=channel.organization,
        kind=policy.identity_kind,
        address=phone or inbound.sender,
        name="" if inbound.echo else inbound.sender_name,
        phone=phone,
    )
    if contact_created and kind.capabilities.profiles and not inbound.echo:
        # Once, in the background: the contact is usable whatever the provider answers.
        tasks.contact_enrich_task.delay_on_commit(contact.pk, channel.pk)
    if inbound.contact_attributes and not inbound.echo:
        contact_services.contact_attributes_merge(contact=contact, attributes=inbound.contact_attributes)
    conversation, _ = services.conversation_for_thread(
        contact=contact, channel=channel, replies_to=inbound.replies_to, reply_token=inbound.reply_token,
        thread=inbound.thread, subject=inbound.subject,
    )
    # Media first and outside any transaction: downloads are slow and may fail.
    known = Message.objects.filter(channel=channel, external_id=inbound.external_id).exists()
    stored, failed = ([], 0) if known else _download_media(adapter, channel, inbound.media)
    text = inbound.text
    if failed:
        text = f"{text}\n\n{MEDIA_NOT_DOWNLOADED}" if text else MEDIA_NOT_DOWNLOADED
    fields = {"text": text, "type": _message_type(inbound), "location": inbound.location,
              "created_at": _provider_time(inbound)}
    if inbound.details is not None or inbound.automated:
        fields["details"] = {**(inbound.details or {}), "automated": inbound.automated}
    if inbound.echo:
        # Sent by a person at the page, from the provider's apps: an agent we cannot name.
        fields.update(sender_kind=Message.SenderKind.AGENT, sender=None)
    try:
        with transaction.atomic():
            if not _lock(event):
                _delete_files(stored)
                return False
            message, created = services.message_record(
                conversation=conversation,
                direction=Message.Direction.OUTBOUND if inbound.echo else Message.Direction.INBOUND,
                external_id=inbound.external_id,
                **fields,
            )
            if created:
                _attach_stored(message, channel, stored)
            else:
                _delete_files(stored)
            if inbound.echo:
                pass
            elif inbound.consent == "opt_out":
                contact_services.consent_opt_out(contact=contact, kind=policy.identity_kind, reason="Replied STOP")
            elif inbound.consent == "opt_in":
                contact_services.consent_opt_in(contact=contact, kind=policy.identity_kind, source="Replied START")
            _finish(event, state=InboundEvent.State.PROCESSED)
    except Exception:
        _delete_files(stored)
        raise
    return True


def _our_echo(channel: Channel, adapter, echo: InboundMessage) -> bool:
    ours = bool(echo.app_id) and echo.app_id == getattr(adapter, "app_id", "")
    return ours or Message.objects.filter(channel=channel, external_id=echo.external_id).exists()


def _process_status(event: InboundEvent, update: StatusUpdate) -> bool:
    with transaction.atomic():
        if not _lock(event):
            return False
        message = (
            Message.objects.select_related("conversation__contact", "channel")
            .filter(channel_id=event.channel_id, external_id=update.external_id, direction=Message.Direction.OUTBOUND)
            .first()
        )
        if message is None:
            # We have not recorded this provider id yet (the send's answer is still on its way):
            # keep the event; the outbox applies it when it records the id.
            _finish(event, state=InboundEvent.State.DEFERRED)
            return False
        changed = services.message_status_apply(
            message=message, status=update.status, error_code=update.error_code, error_reason=update.error_reason
        )
        if changed and update.status == Message.Status.FAILED:
            # A failed delivery that tells us about the contact or the window, like a refused send.
            reason = update.error_reason or f"Provider error {update.error_code}"
            services.refusal_apply(message=message, effect=update.effect, reason=reason)
        _finish(event, state=InboundEvent.State.PROCESSED)
    return True


def _attach_channel(event: InboundEvent) -> None:
    """An event kept for an unknown page / account / number (a kind that routes by address):
    its channel may be connected by now."""
    kinds = [kind.key for kind in catalog.KINDS.values() if kind.routes_by_address and kind.provider == event.provider]
    if not kinds:
        return
    channel = (
        Channel.objects.select_related("organization").filter(kind__in=kinds, address=event.destination).order_by("pk").first()
    )
    if channel is None:
        return
    InboundEvent.objects.filter(pk=event.pk, channel__isnull=True).update(
        channel=channel, organization_id=channel.organization_id
    )
    event.channel, event.organization_id = channel, channel.organization_id


def _routes_by_address(provider: str) -> bool:
    return any(kind.routes_by_address and kind.provider == provider for kind in catalog.KINDS.values())


def _process_watermark(event: InboundEvent, watermark: Watermark) -> bool:
    """Receipts for everything up to a point (Messenger / Instagram): every earlier outbound
    message of the conversation with this customer is delivered (or read)."""
    channel = event.channel
    status = Message.Status.DELIVERED if watermark.kind == "delivery" else Message.Status.READ
    with transaction.atomic():
        if not _lock(event):
            return False
        contact_id = contact_selectors.contact_id_by_address(
            organization_id=channel.organization_id,
            kind=catalog.KINDS[channel.kind].policy.identity_kind,
            address=watermark.sender,
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
            services.statuses_moved(messages, status)
        _finish(event, state=InboundEvent.State.PROCESSED)
    return True


def _process_reaction_or_unsend(event: InboundEvent, change: Reaction | Unsend) -> bool:
    """A reaction (added or removed) or an unsend, shown on the message it is about. A message
    we never recorded (older than our history) has nothing to show it on."""
    with transaction.atomic():
        if not _lock(event):
            return False
        message = Message.objects.filter(channel_id=event.channel_id, external_id=change.external_id).first()
        if message is not None:
            if isinstance(change, Unsend):
                services.message_unsend(message=message)
            else:
                services.message_react(
                    message=message, emoji=change.emoji, by=change.by, remove=change.action == "unreact"
                )
        _finish(event, state=InboundEvent.State.PROCESSED)
    return True


def _process_edit(event: InboundEvent, edit: MessageEdit) -> bool:
    """The customer edited a message: its text follows (an older edit never wins). A message we
    never recorded (sent before the channel was connected) has nothing to change."""
    with transaction.atomic():
        if not _lock(event):
            return False
        message = Message.objects.filter(
            channel_id=event.channel_id, external_id=edit.external_id, direction=Message.Direction.INBOUND
        ).first()
        if message is not None:
            services.message_edit(message=message, text=edit.text, edited_at=edit.edited_at)
        _finish(event, state=InboundEvent.State.PROCESSED)
    return True


def _process_consent(event: InboundEvent, change: ConsentChange) -> bool:
    """The customer blocked or unblocked us (or unsubscribed, or came back) on this kind of
    channel without writing: recorded on their consent for the kind. Someone we never heard
    from has no contact to record it on."""
    channel = event.channel
    kind = catalog.KINDS[channel.kind].policy.identity_kind
    record = {
        "block": lambda contact: contact_services.consent_block(contact=contact, kind=kind, reason=change.reason),
        "unblock": lambda contact: contact_services.consent_unblock(contact=contact, kind=kind),
        "opt_out": lambda contact: contact_services.consent_opt_out(contact=contact, kind=kind, reason=change.reason),
        "opt_in": lambda contact: contact_services.consent_opt_in(contact=contact, kind=kind, source=change.reason),
    }.get(change.change)
    with transaction.atomic():
        if not _lock(event):
            return False
        contact_id = contact_selectors.contact_id_by_address(
            organization_id=channel.organization_id, kind=kind, address=change.sender
        )
        if contact_id is not None and record is not None:
            record(contact_selectors.contact_get(organization=channel.organization_id, contact_id=contact_id))
        _finish(event, state=InboundEvent.State.PROCESSED)
    return True


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
            if ref.content is not None:
                # The message carried it (an email's attachment): nothing to download.
                if len(ref.content) > settings.MEDIA_DOWNLOAD_MAX_BYTES:
                    raise MediaRefused(f"Attachment too large: {len(ref.content)} bytes")
                content, content_type = ref.content, ref.content_type
            else:
                content, content_type = adapter.fetch_media(ref.url, max_bytes=settings.MEDIA_DOWNLOAD_MAX_BYTES)
        except (MediaRefused, OSError) as exc:
            # requests' errors are OSErrors; the message is kept with a note for the agent.
            log.warning("media for channel %s not downloaded: %s", channel.pk, exc)
            failed += 1
            continue
        if content_type in ("", "application/octet-stream") and ref.content_type:
            content_type = ref.content_type
        filename = _filename(ref.url, content_type, ref.filename)
        name = default_storage.save(f"attachments/{timezone.now():%Y/%m}/{filename}", ContentFile(content))
        stored.append(_Stored(name=name, ref=ref, content_type=content_type, size=len(content), filename=filename))
    return stored, failed


def _filename(url: str, content_type: str, name: str = "") -> str:
    """The sender's name for the file when the provider gives one, else the URL's last part;
    with an extension that says its type."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1] if name else urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    stem = stem or "attachment"
    extension = mimetypes.guess_extension(content_type) or ""
    if extension and not stem.lower().endswith(extension) and mimetypes.guess_type(stem)[0] != content_type:
        stem += extension
    try:
        return get_valid_filename(stem)[:200] or "attachment"
    except SuspiciousFileOperation:  # a name of dots only
        return "attachment"


def _delete_files(stored: list[_Stored]) -> None:
    for item in stored:
        default_storage.delete(item.name)
