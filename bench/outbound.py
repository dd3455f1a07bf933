"""Benchmark 2: the outbound pipeline.

A batch of messages through the real path (message_send → outbox row → Celery workers on the
Redis broker → Twilio SDK over HTTP) to the fake Twilio server, which allows 80 messages/s per
sender and answers 429 with Retry-After beyond. While the batch drains, one-to-one agent replies
are sent on the same channel as the inbox sends them (`interactive=True`: their own queue); their
lag is the time from message_send to the provider.
Reference: a plain asyncio loop posting the same requests with a client-side token bucket.
"""

from __future__ import annotations

import asyncio
import collections
import time

import aiohttp

from bench import data, loadgen
from bench.common import InvariantBroken, RunEnv, latency_summary, ratio, worker_start

RATE = 80.0
WORKERS = 4


def fake_start():
    """The fake Twilio server of tests/fakes, stamping when each message reached it."""
    from tests.fakes.twilio import FakeTwilio

    class StampingFake(FakeTwilio):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.arrived: dict[str, float] = {}

        def _store_message(self, req, account_sid):
            resource = super()._store_message(req, account_sid)
            self.arrived[resource["body"]] = time.time()
            return resource

    fake = StampingFake(rate_per_second=RATE).start()
    fake.add_account(data.ACCOUNT_SID, data.AUTH_TOKEN, [data.SENDER])
    return fake


def _creates(fake) -> int:
    return sum(1 for r in list(fake.requests) if r.method == "POST" and r.path.endswith("/Messages.json"))


def _setup(messages: int, replies: int):
    from django.utils import timezone

    from apps.accounts.models import Membership
    from apps.conversations.models import Conversation

    org = data.organization_create("Bench outbound")
    channel = data.channel_create(org)
    agent = data.agent_create(org, f"bench-out-{org.pk}", role="owner")
    membership = Membership.objects.get(user=agent, organization=org)
    contacts = data.contact_create_many(org, messages + replies, prefix="+6017")
    now = timezone.now()
    Conversation.objects.bulk_create(
        [Conversation(organization=org, contact=c, channel=channel, last_inbound_at=now, last_message_at=now)
         for c in contacts],
        batch_size=2000,
    )
    conversations = list(
        Conversation.objects.filter(organization=org).select_related("channel", "contact").order_by("pk")
    )
    return org, channel, membership, conversations[:messages], conversations[messages:]


def parley(env: RunEnv, *, messages: int, replies: int) -> dict:
    from apps.conversations import sending

    fake = fake_start()
    env.twilio_base = fake.base_url
    worker = None
    try:
        org, channel, membership, batch, reply_convs = _setup(messages, replies)
        worker = worker_start(env, concurrency=WORKERS)
        reply_every = max(1, messages // (replies + 1))
        reply_sent: dict[str, float] = {}
        start = time.time()
        r = 0
        for i, conversation in enumerate(batch):
            sending.message_send(membership=membership, conversation=conversation, text=f"batch {org.pk} {i}")
            if i and i % reply_every == 0 and r < replies:
                text = f"reply {org.pk} {r}"
                reply_sent[text] = time.time()
                sending.message_send(membership=membership, conversation=reply_convs[r], text=text, interactive=True)
                r += 1
        queued_at = time.time()
        while r < replies:  # a small batch: the rest of the replies right after it
            text = f"reply {org.pk} {r}"
            reply_sent[text] = time.time()
            sending.message_send(membership=membership, conversation=reply_convs[r], text=text, interactive=True)
            r += 1
        total = messages + replies
        # Generous: a slow drain is a figure to report, not a reason to stop counting.
        deadline = time.time() + max(messages / RATE * 2, messages / 10) + 60
        while len(fake.sent) < total and time.time() < deadline:
            time.sleep(0.2)
        # Give a duplicate the chance to show up before counting.
        time.sleep(1.0)
        sent = list(fake.sent)
        bodies = collections.Counter(m["body"] for m in sent)
        duplicates = sum(n - 1 for n in bodies.values() if n > 1)
        creates = _creates(fake)
        batch_arrivals = [t for body, t in fake.arrived.items() if body.startswith("batch ")]
        elapsed = (max(batch_arrivals) - start) if batch_arrivals else None
        lags = [fake.arrived[text] - at for text, at in reply_sent.items() if text in fake.arrived]
        statuses = _status_counts(org)
    finally:
        if worker is not None:
            worker.stop()
        fake.stop()
    out = {
        "messages": messages,
        "replies": replies,
        "workers": WORKERS,
        "delivered": len(sent),
        "messages_per_s": round(messages / elapsed, 1) if elapsed else None,
        "queued_in_s": round(queued_at - start, 1),
        "provider_requests": creates,
        "share_429": round((creates - len(sent)) / creates, 4) if creates else None,
        "duplicates": duplicates,
        "reply_lag": latency_summary(lags),
        "replies_missing": replies - len(lags),
        "db_statuses": statuses,
    }
    if duplicates:
        raise InvariantBroken(f"outbound: {duplicates} duplicate sends at the provider")
    if len(sent) != total:
        raise InvariantBroken(f"outbound: {len(sent)} of {total} messages reached the provider: {statuses}")
    return out


def _status_counts(org) -> dict:
    from django.db.models import Count

    from apps.conversations.models import Message

    return {row["status"]: row["n"] for row in
            Message.objects.filter(organization=org).values("status").annotate(n=Count("pk")).order_by()}


def reference(*, messages: int) -> dict:
    """A plain asyncio loop: the same form posts, paced by a client-side token bucket at 80/s."""
    fake = fake_start()
    try:
        result = loadgen.run(_reference(fake.base_url, messages))
        sent = len(fake.sent)
        creates = _creates(fake)
    finally:
        fake.stop()
    return {"messages_per_s": round(messages / result["elapsed"], 1), "share_429": round((creates - sent) / creates, 4),
            "provider_requests": creates, "delivered": sent}


async def _reference(base: str, messages: int) -> dict:
    url = f"{base}/2010-04-01/Accounts/{data.ACCOUNT_SID}/Messages.json"
    auth = aiohttp.BasicAuth(data.ACCOUNT_SID, data.AUTH_TOKEN)
    tokens, updated = RATE, time.monotonic()
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        async def post(i: int):
            form = {"To": f"whatsapp:+6017{i:07d}", "From": data.SENDER, "Body": f"batch ref {i}",
                    "StatusCallback": "https://parley.bench/webhooks/twilio/x/status/"}
            while True:
                async with session.post(url, data=form, auth=auth) as response:
                    await response.read()
                    if response.status != 429:
                        return
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))

        start = time.monotonic()
        pending = set()
        while not queue.empty():
            now = time.monotonic()
            tokens = min(RATE, tokens + (now - updated) * RATE)
            updated = now
            if tokens < 1:
                await asyncio.sleep((1 - tokens) / RATE)
                continue
            tokens -= 1
            pending.add(asyncio.create_task(post(queue.get_nowait())))
            pending = {t for t in pending if not t.done()}
        await asyncio.gather(*pending)
        return {"elapsed": time.monotonic() - start}


def run(env: RunEnv, *, messages: int, replies: int) -> dict:
    ref = reference(messages=messages)
    out = parley(env, messages=messages, replies=replies)
    out["reference"] = ref
    out["vs_reference"] = ratio(out["messages_per_s"], ref["messages_per_s"])
    return out
