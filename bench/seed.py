"""The scale seeder: one organization with many conversations and messages, loaded with COPY.

Skewed like a real desk: a few very long threads (5,000 messages), many short ones (lognormal
lengths), most conversations resolved, some assigned. Rows are written as COPY text straight
from Python (no ORM objects), so 2,000,000 messages load in a few minutes including indexes.
Idempotent: an organization seeded with the same sizes is reused.
"""

from __future__ import annotations

import io
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench import data

COPY_CHUNK = 50_000


@dataclass
class Seeded:
    organization: object
    owner: object
    agent: object
    channels: list
    long_ids: list[int]
    normal_id: int
    seconds: float
    reused: bool


def _const(field) -> str:
    """A field's default as COPY text (the columns the seeder does not vary)."""
    value = field.get_default()
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _columns(model, varying: list[str]) -> tuple[list[str], list[int], list[str]]:
    """All non-pk columns, where each varying one sits, and the constant text of the others."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    position = {}
    for index, f in enumerate(fields):
        position[f.attname] = position[f.name] = index
    missing = [name for name in varying if name not in position]
    if missing:
        raise ValueError(f"{model.__name__}: no such fields {missing}")
    order = [position[name] for name in varying]
    template = ["" if index in order else _const(f) for index, f in enumerate(fields)]
    return [f.column for f in fields], order, template


def _copy(model, varying: list[str], rows) -> int:
    """COPY `rows` (tuples in `varying` order, already text or None) into the model's table."""
    from django.db import connection

    columns, order, template = _columns(model, varying)
    table = model._meta.db_table
    count = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3
        with raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            buffer = io.StringIO()
            line = list(template)
            for row in rows:
                for slot, value in zip(order, row):
                    line[slot] = r"\N" if value is None else value
                buffer.write("\t".join(line))
                buffer.write("\n")
                count += 1
                if count % COPY_CHUNK == 0:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
    return count


def _ts(dt: datetime) -> str:
    return dt.isoformat()


def _lengths(rng: random.Random, conversations: int, messages: int, long_threads: int, long_length: int) -> list[int]:
    rest = messages - long_threads * long_length
    short = conversations - long_threads
    raw = [rng.lognormvariate(2.3, 1.0) for _ in range(short)]
    scale = rest / sum(raw)
    lengths = [max(1, int(x * scale)) for x in raw]
    # Land exactly on the total: trim or pad the longest short threads.
    diff = rest - sum(lengths)
    i = 0
    while diff != 0:
        j = i % short
        if diff > 0:
            lengths[j] += 1
            diff -= 1
        elif lengths[j] > 1:
            lengths[j] -= 1
            diff += 1
        i += 1
    return [long_length] * long_threads + lengths


def seed(*, conversations: int, messages: int, long_threads: int, long_length: int, label: str = "scale") -> Seeded:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from apps.accounts.models import Organization
    from apps.contacts.models import Contact, ContactConsent
    from apps.conversations.models import Conversation, ConversationRead, Message
    from apps.providers.models import Channel

    name = f"Bench {label} {conversations}x{messages}"
    users = get_user_model().objects
    existing = Organization.objects.filter(name=name).first()
    if existing is not None and Message.objects.filter(organization=existing).count() == messages:
        convs = Conversation.objects.filter(organization=existing)
        long_ids = list(convs.order_by("pk").values_list("pk", flat=True)[:long_threads])
        normal = convs.order_by("pk").values_list("pk", flat=True)[long_threads + 7]
        return Seeded(existing, users.get(username=f"owner-{existing.pk}"), users.get(username=f"agent-{existing.pk}"),
                      list(Channel.objects.filter(organization=existing).order_by("pk")), long_ids, normal, 0.0, True)
    if existing is not None:
        existing.delete()

    started = time.monotonic()
    rng = random.Random(f"{conversations}:{messages}")
    lengths = _lengths(rng, conversations, messages, long_threads, long_length)
    with transaction.atomic():
        org = data.organization_create(name)
        owner = data.agent_create(org, f"owner-{org.pk}", role="owner")
        agent = data.agent_create(org, f"agent-{org.pk}", role="agent")
        channels = [data.channel_create(org, name="WhatsApp Sales"), data.channel_create(org, name="WhatsApp Support")]
        now = datetime.now(UTC).replace(microsecond=0)
        stamp = _ts(now)

        _copy(Contact, ["organization_id", "name", "phone", "email", "created_at", "updated_at"],
              ((str(org.pk), f"Customer {i}", f"+6019{1_000_000 + i}", f"customer{i}@example.com", stamp, stamp)
               for i in range(conversations)))
        contact_ids = list(Contact.objects.filter(organization=org).order_by("pk").values_list("pk", flat=True))
        _copy(ContactConsent, ["organization_id", "contact_id", "kind", "opted_in", "opted_in_at", "opt_in_source",
                               "opt_out_reason", "blocked_reason", "updated_at"],
              ((str(org.pk), str(contact_id), "whatsapp", "t", stamp, "bench", "", "", stamp)
               for contact_id in contact_ids))

        statuses = ["resolved"] * 12 + ["open"] * 5 + ["pending"] * 2 + ["snoozed"]
        assignees = [str(owner.pk)] * 2 + [str(agent.pk)] * 2 + [None] * 6
        # Conversation i's last message is i minutes ago: the list's order is the seed order.
        last_at = [now - timedelta(minutes=i) for i in range(conversations)]

        def conversation_rows():
            for i, contact_id in enumerate(contact_ids):
                status = "open" if i < long_threads + 10 else statuses[rng.randrange(len(statuses))]
                last = _ts(last_at[i])
                yield (str(org.pk), str(contact_id), str(channels[i % 2].pk), status,
                       assignees[rng.randrange(len(assignees))], last, last, f"Last message of conversation {i}",
                       last, last)

        _copy(Conversation, ["organization_id", "contact_id", "channel_id", "status", "assignee_id", "last_inbound_at",
                             "last_message_at", "last_message_preview", "created_at", "updated_at"],
              conversation_rows())
        conversation_ids = list(
            Conversation.objects.filter(organization=org).order_by("pk").values_list("pk", flat=True)
        )

        def message_rows():
            n = 0
            for i, (conversation_id, length) in enumerate(zip(conversation_ids, lengths)):
                channel_id = str(channels[i % 2].pk)
                end = last_at[i]
                conv = str(conversation_id)
                for k in range(length):
                    at = _ts(end - timedelta(seconds=30 * (length - 1 - k)))
                    inbound = k % 3 != 1
                    n += 1
                    yield (str(org.pk), conv, channel_id, "inbound" if inbound else "outbound",
                           f"Message {k} of conversation {i}: how can we help you today?", f"SMseed{org.pk}x{n:x}",
                           "received" if inbound else "read", "contact" if inbound else "agent",
                           None if inbound else str(owner.pk), at, None if inbound else at)

        _copy(Message, ["organization_id", "conversation_id", "channel_id", "direction", "text", "external_id", "status",
                        "sender_kind", "sender_id", "created_at", "sent_at"], message_rows())

        # The owner has read a third of the conversations up to their last message.
        _copy(ConversationRead, ["conversation_id", "user_id", "last_read_at"],
              ((str(cid), str(owner.pk), _ts(last_at[i])) for i, cid in enumerate(conversation_ids) if i % 3 == 0))
    with connection.cursor() as cursor:
        for model in (Contact, ContactConsent, Conversation, Message, ConversationRead):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return Seeded(org, owner, agent, channels, conversation_ids[:long_threads], conversation_ids[long_threads + 7],
                  time.monotonic() - started, False)
