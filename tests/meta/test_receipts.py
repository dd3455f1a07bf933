"""Read receipts when an agent opens a conversation, and typing indicators while they type."""

import uuid

import pytest
from django.utils import timezone

from apps.contacts import services as contact_services
from apps.conversations import receipts
from apps.conversations.models import Conversation, Message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("meta_app")]

PSID = "6100000000000004"


class Committing:
    """A test client whose requests run what they schedule on commit, as a real request does."""

    def __init__(self, client, capture):
        self.client, self.capture = client, capture

    def get(self, url):
        with self.capture(execute=True):
            return self.client.get(url)

    def post(self, url):
        with self.capture(execute=True):
            return self.client.post(url)


@pytest.fixture
def alice_client(alice_client, django_capture_on_commit_callbacks):
    return Committing(alice_client, django_capture_on_commit_callbacks)


def actions(fake, name):
    return [r for r in fake.requests_to("send") if (r.json or {}).get("sender_action") == name]


@pytest.fixture
def conversation(acme, messenger_channel):
    contact, _ = contact_services.contact_resolve(organization=acme, kind="messenger", address=PSID)
    conversation = Conversation.objects.create(
        organization=acme, contact=contact, channel=messenger_channel, last_inbound_at=timezone.now()
    )
    Message.objects.create(
        organization=acme, conversation=conversation, channel=messenger_channel, direction="inbound",
        text="Hello?", external_id=f"m_{uuid.uuid4().hex}", status="received", sender_kind="contact",
        created_at=timezone.now(),
    )
    return conversation


def test_opening_a_conversation_sends_mark_seen_once(fake_meta, conversation, alice_client):
    assert alice_client.get(f"/conversations/{conversation.pk}/").status_code == 200
    [seen] = actions(fake_meta, "mark_seen")
    assert seen.json == {"recipient": {"id": PSID}, "sender_action": "mark_seen"}

    # Opened again (or by someone else) with nothing new from the customer: nothing more to say.
    alice_client.get(f"/conversations/{conversation.pk}/")
    assert len(actions(fake_meta, "mark_seen")) == 1


def test_no_read_receipt_when_the_channel_setting_is_off(fake_meta, conversation, messenger_channel, alice_client):
    messenger_channel.settings = {**messenger_channel.settings, "send_read_receipts": False}
    messenger_channel.save()
    assert alice_client.get(f"/conversations/{conversation.pk}/").status_code == 200
    assert not actions(fake_meta, "mark_seen")


def test_a_failed_read_receipt_is_not_an_error_for_the_agent(fake_meta, conversation, alice_client):
    from tests.fakes import meta as fakes

    fake_meta.script(fakes.token_expired(), endpoint="send")
    response = alice_client.get(f"/conversations/{conversation.pk}/")
    assert response.status_code == 200
    assert "Hello?" in response.content.decode()
    conversation.channel.refresh_from_db()
    assert conversation.channel.status == "active"


def test_whatsapp_cloud_read_receipt_marks_the_latest_customer_message(
    fake_meta, acme, meta_whatsapp_channel, alice_client
):
    contact, _ = contact_services.contact_resolve(
        organization=acme, kind="whatsapp", address="+60123456789", phone="+60123456789"
    )
    conversation = Conversation.objects.create(organization=acme, contact=contact, channel=meta_whatsapp_channel)
    wamid = f"wamid.{uuid.uuid4().hex}"
    Message.objects.create(
        organization=acme, conversation=conversation, channel=meta_whatsapp_channel, direction="inbound",
        text="Hi", external_id=wamid, status="received", sender_kind="contact", created_at=timezone.now(),
    )
    alice_client.get(f"/conversations/{conversation.pk}/")

    [request] = fake_meta.requests_to("whatsapp")
    assert request.json == {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}


def test_twilio_conversations_send_no_receipts(fake_meta, whatsapp, customer, alice_client):
    conversation = Conversation.objects.create(organization=whatsapp.organization, contact=customer, channel=whatsapp)
    assert alice_client.get(f"/conversations/{conversation.pk}/").status_code == 200
    assert not fake_meta.requests


def test_typing_sends_typing_on_at_most_every_5_seconds(fake_meta, conversation, alice_client):
    url = f"/conversations/{conversation.pk}/typing/"
    assert alice_client.post(url).status_code == 204
    assert alice_client.post(url).status_code == 204
    assert alice_client.post(url).status_code == 204

    [typing] = actions(fake_meta, "typing_on")
    assert typing.json == {"recipient": {"id": PSID}, "sender_action": "typing_on"}


def test_typing_honours_the_channel_setting(fake_meta, conversation, messenger_channel):
    messenger_channel.settings = {**messenger_channel.settings, "send_typing_indicators": False}
    messenger_channel.save()
    conversation.refresh_from_db()
    assert receipts.conversation_typing(conversation=conversation) is False
    assert receipts.conversation_send_typing(conversation=conversation) is False
    assert not actions(fake_meta, "typing_on")


def test_typing_endpoint_is_scoped_to_the_organization(fake_meta, conversation, charlie_client, client):
    assert charlie_client.post(f"/conversations/{conversation.pk}/typing/").status_code == 404
    assert client.post(f"/conversations/{conversation.pk}/typing/").status_code == 302  # to the login page
    assert not fake_meta.requests


def test_typing_url_is_on_the_page_only_when_the_channel_sends_indicators(
    fake_meta, conversation, alice_client, whatsapp, customer
):
    page = alice_client.get(f"/conversations/{conversation.pk}/").content.decode()
    assert f'data-typing-url="/conversations/{conversation.pk}/typing/"' in page
    other = Conversation.objects.create(organization=whatsapp.organization, contact=customer, channel=whatsapp)
    assert "data-typing-url" not in alice_client.get(f"/conversations/{other.pk}/").content.decode()
