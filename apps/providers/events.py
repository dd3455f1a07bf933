"""Inbound events: what a verified webhook carried, recorded once before we answer.

`event_record` inserts each event into `InboundEvent` with `INSERT … ON CONFLICT DO NOTHING
RETURNING` (unique per provider, destination and provider event id), so a retried or duplicated
webhook is a no-op and only new events are handed on. Processing them (contacts, conversations,
messages) belongs to the layer above: `conversations` registers its processor here at app-ready
time (`processor_register`); this module never imports it.
"""

import logging
from typing import Protocol

from django.db import connection, transaction
from django.utils import timezone

from apps.core.errors import ServiceError
from apps.providers import catalog
from apps.providers.kinds.base import RawEvent
from apps.providers.models import Channel, InboundEvent

log = logging.getLogger(__name__)


class Processor(Protocol):
    def schedule(self, event_ids: list[int]) -> None:
        """Process these new events after the current transaction commits (a task each)."""

    def process(self, event_id: int) -> None:
        """Process one event now; raises when it fails (the event records the error)."""


_processor: Processor | None = None


def processor_register(processor: Processor) -> None:
    global _processor
    _processor = processor


@transaction.atomic
def event_record(
    *, channel: Channel | None, events: list[RawEvent], provider: str = "", destination: str = ""
) -> list[int]:
    """Insert the events once; duplicates are skipped by the database. Returns the ids of the
    NEW events and schedules their processing after commit.

    `destination` is where the provider sent them: the channel's uuid, or (a kind that routes by
    address, Meta) the page / account / phone number id; it and `provider` follow from the
    channel's kind when not given. With no channel for it the events are
    kept, failed with the reason, and processed by the sweep (or a replay) once the channel is
    connected."""
    if not events:
        return []
    if channel is not None and not (provider and destination):
        kind = catalog.KINDS[channel.kind]
        provider = provider or kind.provider
        destination = destination or (channel.address if kind.routes_by_address else str(channel.uuid))
    now = timezone.now()
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
    if new_ids and _processor is not None:
        _processor.schedule(new_ids)
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


def event_replay(event: InboundEvent) -> None:
    """Admin "Replay": process a failed, pending or deferred event again now."""
    if event.state == InboundEvent.State.PROCESSED:
        raise ServiceError("already_processed", "This event was already processed.")
    if _processor is None:
        raise ServiceError("no_processor", "Inbound processing is not available in this process.")
    _processor.process(event.pk)
