"""`simulate_inbound` and `demo_load`."""

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.accounts.models import Membership, Organization
from apps.contacts.models import Contact, ContactConsent
from apps.conversations.models import Conversation, Message
from apps.providers.models import Channel, InboundEvent
from apps.providers.catalog import adapter_for
from tests import factories


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_simulate_inbound_local_posts_a_signed_twilio_webhook(whatsapp, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        output = run("simulate_inbound", "--channel", str(whatsapp.uuid), "--from", "+60123456789",
                     "--name", "Siti", "--text", "Hello", "--local")
    assert "HTTP 200" in output
    message = Message.objects.get()
    assert (message.text, message.conversation.channel, message.conversation.contact.name) == ("Hello", whatsapp, "Siti")
    assert message.external_id.startswith("SM")
    event = InboundEvent.objects.get()
    assert event.body["From"] == "whatsapp:+60123456789" and event.body["To"] == factories.TEST_SENDER


def test_simulate_inbound_local_on_a_sandbox_channel_by_id(acme, django_capture_on_commit_callbacks):
    channel = factories.ChannelFactory(organization=acme, kind="sandbox", config={}, secrets={"webhook_secret": "s3"})
    with django_capture_on_commit_callbacks(execute=True):
        output = run("simulate_inbound", "--channel", str(channel.pk), "--from", "+60198765432", "--text", "Hi", "--local")
    assert "HTTP 204" in output
    assert Message.objects.get().text == "Hi"


def test_simulate_inbound_refuses_a_bad_number_and_an_unknown_channel(whatsapp):
    with pytest.raises(CommandError, match="international format"):
        run("simulate_inbound", "--channel", str(whatsapp.uuid), "--from", "0123", "--text", "x", "--local")
    with pytest.raises(CommandError, match="No channel"):
        run("simulate_inbound", "--channel", "not-a-channel", "--from", "+60123456789", "--local")
    assert not InboundEvent.objects.exists()


def snapshot() -> dict:
    return {
        "users": sorted(get_user_model().objects.values_list("username", "password", "is_staff")),
        "organizations": sorted(Organization.objects.values_list("pk", "name", "slug")),
        "memberships": sorted(Membership.objects.values_list("pk", "user__username", "role")),
        "channels": sorted(Channel.objects.values_list("pk", "kind", "name", "status", "uuid")),
        "contacts": sorted(Contact.objects.values_list("pk", "name", "phone")),
        "consents": sorted(ContactConsent.objects.values_list("contact_id", "kind", "opted_in", "opted_out_at")),
        "conversations": sorted(Conversation.objects.values_list("pk", "status", "last_message_at", "assignee_id")),
        "messages": sorted(Message.objects.values_list("pk", "direction", "status", "text", "created_at")),
    }


def test_demo_load_is_idempotent_and_tells_how_to_log_in(db):
    output = run("demo_load")
    first = snapshot()
    assert run("demo_load") == output
    assert snapshot() == first

    assert "http://127.0.0.1:8000/" in output
    assert "admin" in output and "parley-admin" in output and "parley-agent" in output
    admin = authenticate(username="admin", password="parley-admin")
    agent = authenticate(username="agent", password="parley-agent")
    assert admin and agent

    organization = Organization.objects.get(name="Demo Support")
    assert Membership.objects.get(user=admin, organization=organization).role == "owner"
    assert Membership.objects.get(user=agent, organization=organization).role == "agent"
    sandbox = Channel.objects.get(organization=organization, kind="sandbox")
    assert sandbox.name == "WhatsApp (sandbox)" and sandbox.status == "active"
    assert sandbox.secrets["webhook_secret"]
    assert agent.has_perm("providers.view_channel", sandbox)
    twilio = Channel.objects.get(organization=organization, kind="twilio_whatsapp")
    assert twilio.status == "disabled" and adapter_for(twilio).missing_configuration()

    contacts = Contact.objects.filter(organization=organization)
    assert contacts.count() >= 8
    assert contacts.filter(phone="").exists()
    assert contacts.filter(consents__kind="whatsapp", consents__opted_out_at__isnull=False).exists()
    assert sum(contact.whatsapp_eligible for contact in contacts) >= 4

    conversations = Conversation.objects.filter(organization=organization)
    assert 4 <= conversations.count() <= 5
    assert conversations.filter(status="resolved").count() == 1
    assert conversations.filter(last_inbound_at__gt=timezone.now() - timedelta(hours=3)).count() >= 2
    failed = Message.objects.get(organization=organization, status="failed")
    assert failed.error_reason.startswith("Failed to send via WhatsApp:")
    assert Message.objects.filter(organization=organization, direction="inbound").count() >= 5
