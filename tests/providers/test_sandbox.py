"""The sandbox channel: signed JSON webhooks and the simulated customer, through the real path."""

import json
import time

import pytest
from django.utils import timezone
from django.db import connections
from django.test import Client

from apps.conversations.models import Conversation, Message
from apps.conversations import inbound, tasks
from apps.providers.kinds import sandbox
from apps.providers.kinds.base import OutboundMessage
from apps.providers.models import InboundEvent
from apps.providers.catalog import adapter_for
from tests import factories

SECRET = "sandbox-test-secret"


@pytest.fixture
def sandbox_channel(acme):
    return factories.ChannelFactory(
        organization=acme, kind="sandbox", name="WhatsApp (sandbox)", config={}, secrets={"webhook_secret": SECRET}
    )


def post_sandbox(client, channel, payload, secret=SECRET, signature=None):
    body = json.dumps(payload).encode()
    headers = {sandbox.SIGNATURE_HEADER: signature if signature is not None else sandbox.sign(secret, body)}
    return client.post(f"/webhooks/sandbox/{channel.uuid}/", data=body, content_type="application/json", headers=headers)


def test_a_signed_sandbox_message_is_recorded_and_processed(sandbox_channel, django_capture_on_commit_callbacks):
    payload = {"type": "message", "id": sandbox.new_id(), "from": "+60198765432", "name": "Aminah", "text": "Hello"}
    with django_capture_on_commit_callbacks(execute=True):
        response = post_sandbox(Client(), sandbox_channel, payload)
    assert response.status_code == 204
    message = Message.objects.get()
    assert (message.text, message.external_id, message.status) == ("Hello", payload["id"], "received")
    contact = message.conversation.contact
    assert (contact.name, contact.phone, contact.whatsapp_consent.opt_in_source) == ("Aminah", "+60198765432", "contact_wrote_first")
    assert InboundEvent.objects.get().provider == "sandbox"


@pytest.mark.parametrize("signature", ["", "0" * 64, "wrong-secret"])
def test_a_sandbox_webhook_with_a_bad_signature_is_refused(sandbox_channel, signature):
    payload = {"type": "message", "id": sandbox.new_id(), "from": "+60198765432", "text": "Hello"}
    if signature == "wrong-secret":
        response = post_sandbox(Client(), sandbox_channel, payload, secret="not-the-secret")
    else:
        response = post_sandbox(Client(), sandbox_channel, payload, signature=signature)
    assert response.status_code == 403
    assert not InboundEvent.objects.exists()


def test_a_sandbox_channel_without_a_secret_accepts_nothing(acme):
    channel = factories.ChannelFactory(organization=acme, kind="sandbox", config={}, secrets={})
    payload = {"type": "message", "id": sandbox.new_id(), "from": "+60198765432", "text": "Hello"}
    assert post_sandbox(Client(), channel, payload, secret="").status_code == 403


def test_a_malformed_sandbox_body_is_400(sandbox_channel):
    assert post_sandbox(Client(), sandbox_channel, {"type": "message", "text": "no id"}).status_code == 400
    body = b"not json"
    response = Client().post(
        f"/webhooks/sandbox/{sandbox_channel.uuid}/", data=body, content_type="application/json",
        headers={sandbox.SIGNATURE_HEADER: sandbox.sign(SECRET, body)},
    )
    assert response.status_code == 400


def test_the_sandbox_is_configured_without_credentials(sandbox_channel):
    assert adapter_for(sandbox_channel).missing_configuration() == []


def test_a_sandbox_send_is_delivered_then_read_and_the_customer_replies(
    sandbox_channel, customer, django_capture_on_commit_callbacks
):
    conversation = factories.ConversationFactory(channel=sandbox_channel, contact=customer)
    sid = sandbox.new_id()
    message = factories.MessageFactory(conversation=conversation, direction="outbound", status="sent", external_id=sid,
                                       text="Your parcel is on its way")
    args = (str(sandbox_channel.uuid), sid, customer.phone, message.text)

    with django_capture_on_commit_callbacks(execute=True):
        sandbox.sandbox_simulate_task(args[0], "delivered", *args[1:])
    message.refresh_from_db()
    assert message.status == "delivered"

    with django_capture_on_commit_callbacks(execute=True):
        sandbox.sandbox_simulate_task(args[0], "read", *args[1:])
    message.refresh_from_db()
    assert message.status == "read"

    with django_capture_on_commit_callbacks(execute=True):
        sandbox.sandbox_simulate_task(args[0], "reply", *args[1:])
    reply = conversation.messages.get(direction="inbound")
    assert "You said: “Your parcel is on its way”" in reply.text
    assert reply.external_id.startswith("SB")
    conversation.refresh_from_db()
    assert conversation.last_inbound_at == reply.created_at
    # Each step went through the recorded-event path and is processed.
    assert list(InboundEvent.objects.order_by("pk").values_list("kind", "state")) == [
        ("status", "processed"), ("status", "processed"), ("message", "processed")
    ]
    # Running a step again (a redelivered task) changes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert sandbox.sandbox_simulate_task(args[0], "read", *args[1:]) == []
    assert InboundEvent.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_send_schedules_the_simulation_on_timers_in_eager_mode(acme, settings):
    """Eager Celery ignores countdowns; the adapter waits on timer threads instead. The status
    may arrive before the sender records the id: it is deferred, then applied."""
    settings.SANDBOX_DELAYS = {"delivered": 0.0, "read": 0.05, "reply": 0.1}
    channel = factories.ChannelFactory(organization=acme, kind="sandbox", config={}, secrets={"webhook_secret": SECRET})
    contact = factories.ContactFactory(organization=acme, phone="+60123456789")
    conversation = factories.ConversationFactory(channel=channel, contact=contact)
    message = factories.MessageFactory(conversation=conversation, direction="outbound", status="sending", text="Hi")

    result = adapter_for(channel).send(OutboundMessage(to=contact.phone, text="Hi"))
    assert result.external_id.startswith("SB") and len(result.external_id) == 34
    message.external_id = result.external_id
    message.save(update_fields=["external_id"])

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        # What the outbound side does after recording the id (and the sweep does later).
        for event_id in inbound.deferred_event_ids(channel_id=channel.pk, external_id=result.external_id):
            inbound.event_process(event_id)
        message.refresh_from_db()
        if message.status == "read" and conversation.messages.filter(direction="inbound").exists():
            break
        time.sleep(0.05)
    connections.close_all()
    assert message.status == "read"
    assert "You said: “Hi”" in conversation.messages.get(direction="inbound").text
    assert Conversation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_agent_reply_on_the_sandbox_goes_the_whole_way(acme, alice, settings):
    """message_send → delivery task → sandbox adapter → simulated statuses and reply, all
    through the real inbound path (eager Celery, timer threads)."""
    from apps.accounts.models import Membership
    from apps.conversations import sending

    settings.SANDBOX_DELAYS = {"delivered": 0.0, "read": 0.05, "reply": 0.1}
    channel = factories.ChannelFactory(organization=acme, kind="sandbox", config={}, secrets={"webhook_secret": SECRET})
    contact = factories.ContactFactory(organization=acme, phone="+60123456789")
    conversation = factories.ConversationFactory(channel=channel, contact=contact)
    Conversation.objects.filter(pk=conversation.pk).update(last_inbound_at=timezone.now())
    conversation.refresh_from_db()

    message = sending.message_send(membership=Membership.objects.get(user=alice), conversation=conversation,
                                   text="Your refund is on its way")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        message.refresh_from_db()
        if message.status == "read" and conversation.messages.filter(direction="inbound").exists():
            break
        tasks.inbound_event_sweep_task()  # picks up a status deferred while the send was recording its id
        time.sleep(0.05)
    connections.close_all()
    assert message.status == "read" and message.external_id.startswith("SB")
    assert "Your refund is on its way" in conversation.messages.get(direction="inbound").text
