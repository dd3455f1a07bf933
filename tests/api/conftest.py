import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from apps.accounts import services as account_services
from tests import factories


@pytest.fixture
def token_client(db):
    """A client that authenticates with `Authorization: Bearer <key>` of a membership's token."""

    def make(user, organization) -> Client:
        membership = user.memberships.get(organization=organization)
        _, key = account_services.api_token_create(membership=membership, name="test")
        return Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    return make


@pytest.fixture
def conversation(whatsapp, customer):
    """A conversation with Siti whose reply window is open (she wrote 5 minutes ago)."""
    inbound_at = timezone.now() - timedelta(minutes=5)
    conversation = factories.ConversationFactory(
        channel=whatsapp, contact=customer, last_inbound_at=inbound_at, last_message_at=inbound_at
    )
    factories.MessageFactory(conversation=conversation, text="Hello, is my order ready?", created_at=inbound_at)
    return conversation


@pytest.fixture
def grant():
    def give(user, channel):
        assign_perm("providers.view_channel", user, channel)

    return give


def body(response) -> dict:
    return json.loads(response.content)
