import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from datetime import timedelta

from django.utils import timezone

from apps.accounts.models import Membership
from apps.conversations import attachments
from apps.providers.kinds.whatsapp import POLICY as WHATSAPP
from tests import factories

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def alice_membership(alice, acme):
    return Membership.objects.get(user=alice, organization=acme)


@pytest.fixture
def bob_membership(bob, acme):
    return Membership.objects.get(user=bob, organization=acme)


@pytest.fixture
def charlie_membership(charlie, globex):
    return Membership.objects.get(user=charlie, organization=globex)


@pytest.fixture
def open_conversation(whatsapp, customer):
    """The customer wrote an hour ago: the 24 h window is open."""
    return factories.ConversationFactory(
        channel=whatsapp, contact=customer, last_inbound_at=timezone.now() - timedelta(hours=1)
    )


@pytest.fixture
def upload(alice_membership):
    def make(name="photo.png", content=PNG, content_type="image/png", membership=None):
        return attachments.attachment_upload(
            membership=membership or alice_membership,
            uploaded_file=SimpleUploadedFile(name, content, content_type=content_type),
            policy=WHATSAPP,
        )

    return make
