import hashlib
import re

import pytest
from django.contrib import admin
from django.test import Client

from apps.accounts.models import ApiToken, Membership, Team
from apps.contacts.models import ContactIdentity
from apps.conversations.models import Message
from apps.message_templates.models import MessageTemplate
from apps.providers.models import InboundEvent
from tests import factories


def test_every_registered_model_lists_and_opens(root_client, conversation_with_everything):
    for model in admin.site._registry:
        meta = model._meta
        if meta.app_label not in {"accounts", "contacts", "providers", "conversations", "message_templates"}:
            continue
        listing = root_client.get(f"/admin/{meta.app_label}/{meta.model_name}/")
        assert listing.status_code == 200, meta.label
        obj = model.objects.first()
        if obj is not None:
            assert root_client.get(f"/admin/{meta.app_label}/{meta.model_name}/{obj.pk}/change/").status_code == 200, (
                meta.label
            )
        assert factories.TEST_AUTH_TOKEN not in listing.content.decode()


@pytest.fixture
def conversation_with_everything(whatsapp, customer, alice, acme):
    conversation = factories.ConversationFactory(channel=whatsapp, contact=customer)
    factories.MessageFactory(conversation=conversation)
    MessageTemplate.objects.create(organization=acme, name="Welcome", body="Hi {{1}}")
    ApiToken.objects.create(membership=Membership.objects.get(user=alice), name="ci", prefix="prl_x", key_hash="0" * 64)
    from apps.accounts import services

    services.team_create(organization=acme, name="Billing")
    InboundEvent.objects.create(provider="twilio", destination=str(whatsapp.uuid), channel=whatsapp,
                                organization=acme, event_id="SMx", kind="message", body={"Body": "hi"})
    return conversation


def test_api_token_key_is_shown_once_and_only_its_hash_is_stored(root_client, alice, acme):
    membership = Membership.objects.get(user=alice, organization=acme)
    response = root_client.post(
        "/admin/accounts/apitoken/add/", {"membership": membership.pk, "name": "Zapier", "_save": "Save"}, follow=True
    )
    assert response.redirect_chain, response.content.decode()[:2000]
    shown = [str(m) for m in response.context["messages"] if "shown only once" in str(m)]
    key = re.search(r"(prl_\S+)", shown[0]).group(1)
    assert key in response.content.decode()
    token = ApiToken.objects.get(name="Zapier")
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest() and token.prefix == key[:10]
    # Once: neither the list nor the token's page shows it again.
    assert key not in root_client.get("/admin/accounts/apitoken/").content.decode()
    assert key not in root_client.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode()
    # The key works for the API as Alice's membership.
    assert Client(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/channels/").status_code == 200


def test_team_created_in_the_admin_has_its_group(root_client, acme):
    response = root_client.post("/admin/accounts/team/add/", {"organization": acme.pk, "name": "Billing", "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:2000]
    team = Team.objects.get(name="Billing")
    assert team.organization == acme and team.group_id is not None


def test_contact_with_identities_inline(root_client, customer):
    page = root_client.get(f"/admin/contacts/contact/{customer.pk}/change/").content.decode()
    assert "+60123456789" in page and "identities-TOTAL_FORMS" in page


def test_contact_admin_refuses_an_invalid_phone(root_client, customer):
    data = {
        "organization": customer.organization_id, "name": "Siti", "email": "", "phone": "0123", "avatar_url": "",
        "custom_attributes": "{}", "identities-TOTAL_FORMS": "0", "identities-INITIAL_FORMS": "0",
        "consents-TOTAL_FORMS": "0", "consents-INITIAL_FORMS": "0",
        "_save": "Save",
    }
    response = root_client.post(f"/admin/contacts/contact/{customer.pk}/change/", data)
    assert response.status_code == 200
    assert "Enter the phone number in international format, for example +60123456789." in response.content.decode()


def test_messages_are_read_only(root_client, conversation_with_everything):
    message = Message.objects.first()
    page = root_client.get(f"/admin/conversations/message/{message.pk}/change/").content.decode()
    assert 'name="text"' not in page
    assert root_client.get("/admin/conversations/message/add/").status_code == 403


def test_replay_selected_events(root_client, whatsapp, customer, fake_twilio):
    body = {
        "MessageSid": "SM" + "7" * 32, "From": "whatsapp:+60123456789", "To": factories.TEST_SENDER,
        "Body": "Is anyone there?", "NumMedia": "0", "ProfileName": "Siti",
    }
    event = InboundEvent.objects.create(
        provider="twilio", destination=str(whatsapp.uuid), channel=whatsapp, organization=whatsapp.organization,
        event_id=body["MessageSid"], kind="message", body=body, state="failed", attempts=3,
        last_error="OperationalError: database was down",
    )
    listing = root_client.get("/admin/providers/inboundevent/?state__exact=failed").content.decode()
    assert "OperationalError: database was down" in listing

    response = root_client.post(
        "/admin/providers/inboundevent/", {"action": "replay_events", "_selected_action": [event.pk]}, follow=True
    )
    assert "Replayed 1 event(s)." in response.content.decode()
    event.refresh_from_db()
    assert event.state == "processed"
    assert Message.objects.get(external_id=body["MessageSid"]).text == "Is anyone there?"

    again = root_client.post(
        "/admin/providers/inboundevent/", {"action": "replay_events", "_selected_action": [event.pk]}, follow=True
    )
    assert "Skipped 1 event(s) already processed." in again.content.decode()
    assert Message.objects.filter(external_id=body["MessageSid"]).count() == 1
    assert ContactIdentity.objects.filter(address="+60123456789").count() == 1
