"""A send an agent makes from the inbox goes to the `interactive` queue on the real broker, so it
never waits behind a batch queued in `celery` (the outbound benchmark's reply lag)."""

import json
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from apps.accounts.models import Membership
from apps.conversations import sending
from config.celery import app
from tests import factories

pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs the Redis broker")


@pytest.fixture
def broker(settings):
    """Celery publishing to the real Redis broker (not eager) for the duration of a test."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.delete("celery", "interactive")
    yield client
    client.delete("celery", "interactive")
    app.conf.task_always_eager = True


def _queued(client, queue: str) -> list[tuple[str, list]]:
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        out.append((message["headers"]["task"], message["headers"]["argsrepr"]))
    return out


@pytest.fixture
def conversation(whatsapp, customer):
    return factories.ConversationFactory(channel=whatsapp, contact=customer,
                                         last_inbound_at=timezone.now() - timedelta(hours=1))


def test_inbox_sends_are_queued_on_the_interactive_queue(broker, alice, acme, conversation,
                                                          django_capture_on_commit_callbacks):
    membership = Membership.objects.get(user=alice, organization=acme)
    with django_capture_on_commit_callbacks(execute=True):
        reply = sending.message_send(membership=membership, conversation=conversation, text="Agent reply",
                                     interactive=True)
    with django_capture_on_commit_callbacks(execute=True):
        batch = sending.message_send(membership=membership, conversation=conversation, text="From a batch")
    assert _queued(broker, "interactive") == [
        ("apps.conversations.tasks.message_deliver_interactive_task", f"({reply.pk},)")
    ]
    assert _queued(broker, "celery") == [("apps.conversations.tasks.message_deliver_task", f"({batch.pk},)")]


def test_the_inbox_view_sends_interactively(broker, alice_client, conversation, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/conversations/{conversation.pk}/send/", {"text": "Hello from the inbox"})
    assert response.status_code in (200, 302)
    assert [task for task, _ in _queued(broker, "interactive")] == [
        "apps.conversations.tasks.message_deliver_interactive_task"
    ]
    assert _queued(broker, "celery") == []


def test_every_worker_consumes_both_queues():
    assert {queue.name for queue in app.amqp.queues.values()} >= {"celery", "interactive"}
