"""A worker killed in the middle of a send, and a provider that fails, throttles and hangs, all
through a real Celery worker and the fake Twilio server over HTTP.

Service-level versions (a lease that expired after the provider call, 429 with Retry-After, 5xx
backoff, a read timeout left `unknown`) are in tests/conversations/test_delivery.py and
test_tasks.py; these prove that Celery's own redelivery (acks_late, reject_on_worker_lost), the
countdown retries on the broker and concurrent worker threads never add a second send.
"""

import os
import random
import signal
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.conversations import sending
from apps.conversations.models import Message
from apps.providers.models import InboundEvent
from tests import factories
from tests.fakes import twilio as fake_twilio
from tests.faults.conftest import post_concurrently, wait_for
from tests.faults.test_redis_outage import api_send, sent_to

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

# Imported for their fixtures.
from tests.faults.test_redis_outage import api_key, conversation  # noqa: E402,F401


def posts_to(fake, to: str) -> int:
    return sum(1 for r in fake.requests if r.method == "POST" and r.param("To") == to)


def test_worker_killed_mid_send_the_provider_sees_the_message_once_and_the_agent_is_told(
    processes, broker, redis_server, fake, conversation, api_key
):
    web = processes.web()
    worker = processes.worker(pool="prefork", concurrency=1)
    to = "whatsapp:" + conversation.contact.phone
    release = threading.Event()
    fake.script(fake_twilio.hang(seconds=30, release=release), to=to)

    assert api_send(web, api_key, conversation, "in flight", "kill-1").status_code == 202
    wait_for(lambda: posts_to(fake, to) == 1, timeout=15, what="the provider to receive the send")
    [child] = worker.pool_children()
    os.kill(child, signal.SIGKILL)
    # Celery requeues the task of a lost child (reject_on_worker_lost); the new child finds the row
    # claimed, so it does not send. The queue drains without a second request.
    wait_for(lambda: "WorkerLostError" in worker.output(), timeout=15, what="the worker to notice its lost child")
    wait_for(lambda: redis_server.queued() == 0, timeout=15, what="the redelivered task to run")
    release.set()
    message = Message.objects.get(direction="outbound")
    assert message.status == "sending" and message.attempted_at is not None

    # When the lease runs out, the sweep says what happened instead of sending blindly.
    sending.outbox_sweep(now=timezone.now() + sending.lease_duration() + timedelta(seconds=1))
    message.refresh_from_db()
    assert message.status == "unknown"
    assert message.error_reason == sending.INTERRUPTED
    wait_for(lambda: redis_server.queued() == 0, timeout=10, what="the queue to stay empty")
    assert posts_to(fake, to) == 1
    assert len(sent_to(fake, to)) == 1


def test_provider_503s_a_429_storm_and_a_hang_never_duplicate(processes, broker, fake, whatsapp, api_key, acme):
    web = processes.web()
    processes.worker(concurrency=4)
    fake.rate_per_second = 5  # a storm of 429 (Retry-After: 1) beyond five per second
    flaky, hung, busy = (
        factories.ConversationFactory(
            channel=whatsapp,
            contact=factories.ContactFactory(organization=acme, phone=phone),
            last_inbound_at=timezone.now(),
        )
        for phone in ("+60123456701", "+60123456702", "+60123456703")
    )
    fake.script(fake_twilio.service_unavailable(), fake_twilio.service_unavailable(), to="whatsapp:+60123456701")
    fake.script(fake_twilio.hang(seconds=20), to="whatsapp:+60123456702")

    calls = [lambda: api_send(web, api_key, flaky, "flaky", "flaky"), lambda: api_send(web, api_key, hung, "hung", "hung")]
    calls += [lambda n=n: api_send(web, api_key, busy, f"busy {n}", f"busy-{n}") for n in range(12)]
    assert [r.status_code for r in post_concurrently(calls)] == [202] * 14

    outbox = Message.objects.filter(direction="outbound")
    wait_for(lambda: outbox.filter(status__in=["sent", "unknown"]).count() == 14, timeout=45,
             what="every send to reach sent or unknown")
    assert outbox.get(conversation=flaky).status == "sent"
    assert list(outbox.filter(conversation=busy).values_list("status", flat=True).distinct()) == ["sent"]
    stuck = outbox.get(conversation=hung)
    assert stuck.status == "unknown"
    assert "may or may not have been sent" in stuck.error_reason

    # The provider received each message once; the hang was not retried blindly.
    bodies = [m["body"] for m in fake.sent]
    assert sorted(bodies) == sorted(["flaky", "hung", *(f"busy {n}" for n in range(12))])
    assert posts_to(fake, "whatsapp:+60123456702") == 1
    assert posts_to(fake, "whatsapp:+60123456701") == 3  # two 503s, then the send
    throttled = sum(1 for r in fake.requests if r.method == "POST") - 14 - 2
    assert throttled > 0, "the fake never throttled: the storm did not happen"
    # Every message recorded the sid the provider gave it.
    assert set(outbox.filter(status="sent").values_list("external_id", flat=True)) == {
        m["sid"] for m in fake.sent if m["body"] != "hung"
    }


STATUS_RANK = {"sent": 2, "failed": 3, "delivered": 4, "read": 5}


def test_status_callbacks_in_every_order_with_duplicates_end_at_the_highest(
    processes, fake, conversation, api_key
):
    web = processes.web()
    processes.worker(concurrency=4)
    sends = [api_send(web, api_key, conversation, f"status {n}", f"status-{n}") for n in range(6)]
    assert [r.status_code for r in sends] == [202] * 6
    outbox = Message.objects.filter(direction="outbound")
    wait_for(lambda: list(outbox.values_list("status", flat=True).distinct()) == ["sent"], timeout=20,
             what="the sends to go out")

    rng = random.Random(20240505)
    callbacks, expected = [], {}
    for n, message in enumerate(outbox.order_by("pk")):
        statuses = ["sent", "delivered", "read"][: 1 + n % 3] + (["failed"] if n % 2 else [])
        sequence = statuses * 2 + [rng.choice(statuses)]
        rng.shuffle(sequence)
        expected[message.external_id] = max(statuses, key=STATUS_RANK.get)
        callbacks += [lambda sid=message.external_id, s=s: fake.post_status_callback(sid, s) for s in sequence]
    rng.shuffle(callbacks)

    assert set(post_concurrently(callbacks)) == {204}
    wait_for(lambda: not InboundEvent.objects.exclude(state="processed").exists(), timeout=20,
             what="the status events to be processed")
    assert dict(outbox.values_list("external_id", "status")) == expected
