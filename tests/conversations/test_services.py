import threading
from itertools import permutations

import pytest
from django.db import connection

from apps.conversations import services
from apps.conversations.models import Conversation, Message
from tests import factories


def test_status_only_moves_forward(acme):
    message = factories.MessageFactory(conversation__channel__organization=acme, direction="outbound", status="pending")
    assert services.message_status_apply(message=message, status="sent")
    assert services.message_status_apply(message=message, status="read")
    assert not services.message_status_apply(message=message, status="delivered")
    assert not services.message_status_apply(message=message, status="read")
    message.refresh_from_db()
    assert message.status == "read" and message.read_at and message.sent_at


def test_failed_ends_only_an_undelivered_message(acme):
    message = factories.MessageFactory(conversation__channel__organization=acme, direction="outbound", status="sent")
    assert services.message_status_apply(message=message, status="failed", error_code="30008", error_reason="Failed to send via WhatsApp: unknown error.")
    message.refresh_from_db()
    assert (message.status, message.error_code) == ("failed", "30008")
    delivered = factories.MessageFactory(conversation=message.conversation, direction="outbound", status="delivered")
    assert not services.message_status_apply(message=delivered, status="failed")


@pytest.mark.parametrize("order", list(permutations(["sent", "delivered", "read", "sent", "delivered"]))[::7])
def test_any_order_ends_at_the_highest(acme, order):
    message = factories.MessageFactory(conversation__channel__organization=acme, direction="outbound", status="pending")
    for status in order:
        services.message_status_apply(message=message, status=status)
    message.refresh_from_db()
    assert message.status == "read"


def test_inbound_recorded_once_and_updates_the_conversation(acme):
    conversation = factories.ConversationFactory(channel__organization=acme, status="pending", last_message_at=None)
    first, created = services.message_record_inbound(conversation=conversation, external_id="SM1", text="Hello\nthere")
    again, created_again = services.message_record_inbound(conversation=conversation, external_id="SM1", text="Hello")
    assert created and not created_again and first.pk == again.pk
    conversation.refresh_from_db()
    assert conversation.last_inbound_at == first.created_at
    assert conversation.last_message_preview == "Hello there"
    assert conversation.status == "open"


def test_resolved_conversation_is_reopened_not_duplicated(acme):
    conversation = factories.ConversationFactory(channel__organization=acme, status="resolved")
    reopened, created = services.conversation_open_for(contact=conversation.contact, channel=conversation.channel)
    assert reopened.pk == conversation.pk and not created and reopened.status == "open"


@pytest.mark.django_db(transaction=True)
def test_racing_opens_make_one_conversation():
    channel = factories.ChannelFactory()
    contact = factories.ContactFactory(organization=channel.organization)
    ids, barrier = [], threading.Barrier(6)

    def open_():
        barrier.wait()
        try:
            ids.append(services.conversation_open_for(contact=contact, channel=channel)[0].pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert Conversation.objects.filter(contact=contact).count() == 1


def test_assign_refuses_a_stranger(acme, alice, charlie):
    conversation = factories.ConversationFactory(channel__organization=acme)
    services.conversation_assign(conversation=conversation, assignee=alice, membership=None)
    assert Conversation.objects.get(pk=conversation.pk).assignee == alice
    with pytest.raises(Exception) as error:
        services.conversation_assign(conversation=conversation, assignee=charlie, membership=None)
    assert getattr(error.value, "status", None) == 404
    assert Message.objects.count() == 0
