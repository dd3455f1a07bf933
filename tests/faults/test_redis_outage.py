"""Redis (broker and channel layer) paused, killed and restarted empty, or unreachable at commit,
while real webhooks and real sends go through the web server and a Celery worker.

The service-level versions (a sweep re-enqueuing a pending row, an inbound event kept when the
broker is down) are in tests/conversations/test_tasks.py and tests/providers/test_webhooks.py;
these prove the same with the processes and the outage real.
"""

import threading
import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from apps.accounts.models import Membership
from apps.accounts.services import api_token_create
from apps.conversations import sending
from apps.conversations.models import Message
from apps.conversations import inbound
from apps.conversations import tasks as inbound_tasks
from apps.providers.models import InboundEvent
from tests import factories
from tests.faults.conftest import post_concurrently, post_webhook, wait_for
from tests.faults.test_webhook_races import inbound_params, new_sid

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

PAUSE_SECONDS = 20
# A provider gives up on a webhook after 15 s (Twilio); we must answer well before that.
WEBHOOK_DEADLINE = 10.0


@pytest.fixture
def conversation(whatsapp, customer):
    return factories.ConversationFactory(channel=whatsapp, contact=customer, last_inbound_at=timezone.now())


@pytest.fixture
def api_key(alice, acme):
    _, key = api_token_create(membership=Membership.objects.get(user=alice, organization=acme), name="faults")
    return key


def api_send(web, api_key: str, conversation, text: str, token: str) -> requests.Response:
    return requests.post(
        f"{web.url}/api/v1/conversations/{conversation.pk}/messages/",
        json={"text": text, "client_token": token},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=WEBHOOK_DEADLINE,
    )


def sweep(*, later: timedelta = timedelta(minutes=2)) -> None:
    """What beat runs (outbox and inbound sweeps), as it would run once the outage is over."""
    now = timezone.now() + later
    sending.outbox_sweep(now=now)
    for event_id in inbound.event_ids_due(now=now):
        inbound_tasks.inbound_event_process_task.delay(event_id)


def sent_to(fake, to: str) -> list[dict]:
    return [m for m in fake.sent if m["to"] == to]


def test_redis_paused_20s_webhooks_answer_200_events_stored_once_sends_drain_after(
    processes, broker, redis_server, fake, whatsapp, conversation, api_key
):
    web = processes.web()
    processes.worker(concurrency=4)
    path = f"/webhooks/twilio/{whatsapp.uuid}/"
    # Warm connections first: a pause then hits open sockets, the hard case.
    assert post_webhook(web.url, path, inbound_params(MessageSid=new_sid(), Body="before")).status_code == 200
    wait_for(lambda: Message.objects.filter(text="before").exists(), timeout=10, what="the first webhook processed")

    unique = [inbound_params(MessageSid=new_sid(), Body=f"during pause {n}") for n in range(4)]
    redis_server.pause()
    resume = threading.Timer(PAUSE_SECONDS, redis_server.resume)
    resume.start()
    paused_at = time.monotonic()
    try:
        # Each webhook twice (a provider retry), concurrently; and three agent sends.
        webhooks = post_concurrently([lambda p=p: post_webhook(web.url, path, p, timeout=WEBHOOK_DEADLINE)
                                      for p in unique * 2])
        sends = [api_send(web, api_key, conversation, f"reply {n}", f"pause-{n}") for n in range(3)]
        answered_during_pause = time.monotonic() - paused_at < PAUSE_SECONDS
    finally:
        resume.join()

    assert [getattr(r, "status_code", r) for r in webhooks] == [200] * 8
    assert [getattr(r, "status_code", r) for r in sends] == [202] * 3
    assert answered_during_pause, "the web server waited for Redis instead of answering"
    assert InboundEvent.objects.count() == 5
    outbox = Message.objects.filter(direction="outbound")
    assert sorted(outbox.values_list("status", flat=True)) == ["pending"] * 3
    assert not sent_to(fake, "whatsapp:" + conversation.contact.phone)

    # Redis is back: the sweep re-enqueues what could not be enqueued; everything drains once.
    wait_for(redis_server.ping, timeout=10, what="Redis to answer again")
    sweep()
    wait_for(lambda: set(outbox.values_list("status", flat=True)) == {"sent"}, timeout=30,
             what="the three sends to go out")
    wait_for(lambda: set(InboundEvent.objects.values_list("state", flat=True)) == {"processed"}, timeout=20,
             what="the webhook events to be processed")
    assert sorted(m["body"] for m in sent_to(fake, "whatsapp:" + conversation.contact.phone)) == [
        "reply 0", "reply 1", "reply 2"
    ]
    for params in unique:
        assert Message.objects.filter(external_id=params["MessageSid"]).count() == 1


def test_redis_killed_and_restarted_empty_lost_tasks_are_reenqueued_by_the_sweep_and_sent_once(
    processes, broker, redis_server, fake, whatsapp, conversation, api_key
):
    web = processes.web()
    path = f"/webhooks/twilio/{whatsapp.uuid}/"
    # No worker yet: the tasks wait in Redis, and die with it.
    sends = [api_send(web, api_key, conversation, f"queued {n}", f"lost-{n}") for n in range(3)]
    params = inbound_params(MessageSid=new_sid(), Body="lost with the broker")
    assert post_webhook(web.url, path, params).status_code == 200
    assert [r.status_code for r in sends] == [202] * 3
    assert redis_server.queued() == 4

    redis_server.kill()
    redis_server.restart()
    assert redis_server.queued() == 0
    processes.worker(concurrency=4)
    sweep()

    outbox = Message.objects.filter(direction="outbound")
    wait_for(lambda: set(outbox.values_list("status", flat=True)) == {"sent"}, timeout=30, what="the sends to go out")
    wait_for(lambda: Message.objects.filter(external_id=params["MessageSid"]).exists(), timeout=20,
             what="the inbound event to be processed")
    # A second sweep (beat keeps running) finds nothing to do: nothing is sent twice.
    sweep()
    wait_for(lambda: redis_server.queued() == 0, timeout=20, what="the queue to drain")
    assert sorted(m["body"] for m in sent_to(fake, "whatsapp:" + conversation.contact.phone)) == [
        "queued 0", "queued 1", "queued 2"
    ]
    assert InboundEvent.objects.get().state == "processed"


def test_broker_unreachable_at_commit_the_message_is_sent_once_after_it_returns(
    processes, broker, redis_server, fake, whatsapp, conversation, api_key
):
    web = processes.web()
    redis_server.kill()
    path = f"/webhooks/twilio/{whatsapp.uuid}/"

    send = api_send(web, api_key, conversation, "while the broker is down", "down-1")
    params = inbound_params(MessageSid=new_sid(), Body="webhook while the broker is down")
    webhook = post_webhook(web.url, path, params)
    # The same client token again (the agent's page retried): still one message.
    again = api_send(web, api_key, conversation, "while the broker is down", "down-1")

    assert (send.status_code, webhook.status_code, again.status_code) == (202, 200, 202)
    assert send.json()["id"] == again.json()["id"]
    message = Message.objects.get(direction="outbound")
    assert message.status == "pending"
    assert InboundEvent.objects.get().state == "pending"

    redis_server.restart()
    processes.worker(concurrency=2)
    sweep()
    wait_for(lambda: Message.objects.get(pk=message.pk).status == "sent", timeout=30, what="the send to go out")
    wait_for(lambda: InboundEvent.objects.get().state == "processed", timeout=20, what="the event to be processed")
    sweep()
    wait_for(lambda: redis_server.queued() == 0, timeout=20, what="the queue to drain")
    assert [m["body"] for m in sent_to(fake, "whatsapp:" + conversation.contact.phone)] == ["while the broker is down"]
