"""Racing webhooks through the real web server and real Celery workers.

tests/providers/test_webhooks.py runs the same races in-process with eager processing; here each
webhook is a real HTTP request to uvicorn, and the events are processed concurrently by a
worker's threads, so the uniqueness comes from the database, not from one process's ordering.
"""

import json
import secrets
from pathlib import Path

import pytest

from apps.contacts.models import Contact
from apps.conversations.models import Conversation, Message
from apps.providers.models import InboundEvent
from tests.faults.conftest import post_concurrently, post_webhook, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

PAYLOADS = Path(__file__).resolve().parents[1] / "providers" / "payloads"


def inbound_params(**overrides) -> dict[str, str]:
    params = json.loads((PAYLOADS / "twilio_inbound_text.json").read_text())
    params.update(overrides)
    return params


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def all_processed() -> bool:
    states = set(InboundEvent.objects.values_list("state", flat=True))
    return states == {"processed"}


def test_the_same_webhook_ten_times_at_once_is_one_event_and_one_message(processes, whatsapp, customer):
    web = processes.web()
    processes.worker(concurrency=4)
    params = inbound_params(MessageSid=new_sid())
    path = f"/webhooks/twilio/{whatsapp.uuid}/"

    results = post_concurrently([lambda: post_webhook(web.url, path, params)] * 10)

    assert [r.status_code for r in results] == [200] * 10
    wait_for(all_processed, timeout=20, what="the event to be processed by the worker")
    assert InboundEvent.objects.count() == 1
    assert Message.objects.filter(external_id=params["MessageSid"]).count() == 1
    assert Conversation.objects.count() == 1


def test_five_messages_from_a_new_number_at_once_make_one_contact_and_one_conversation(processes, whatsapp):
    web = processes.web()
    processes.worker(concurrency=5)
    path = f"/webhooks/twilio/{whatsapp.uuid}/"
    batch = [
        inbound_params(MessageSid=new_sid(), From="whatsapp:+60198765432", WaId="60198765432", ProfileName="Aminah",
                       Body=f"message {n}")
        for n in range(5)
    ]

    results = post_concurrently([lambda p=p: post_webhook(web.url, path, p) for p in batch])

    assert [r.status_code for r in results] == [200] * 5
    wait_for(lambda: Message.objects.count() == 5 and all_processed(), timeout=20,
             what="five messages processed by the worker")
    assert Contact.objects.count() == 1
    assert Conversation.objects.count() == 1
    assert InboundEvent.objects.count() == 5
    conversation = Conversation.objects.get()
    assert set(conversation.messages.values_list("text", flat=True)) == {f"message {n}" for n in range(5)}
