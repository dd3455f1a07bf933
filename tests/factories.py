import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.accounts.models import Membership, Organization
from apps.contacts.models import Contact
from apps.conversations.models import Conversation, Message
from apps.providers.models import Channel

TEST_ACCOUNT_SID = "AC" + "1" * 32
TEST_AUTH_TOKEN = "test-auth-token-0123456789abcdef"
TEST_SENDER = "whatsapp:+14155238886"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("password")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = "agent"


class ChannelFactory(factory.django.DjangoModelFactory):
    """A Twilio WhatsApp channel configured with the fake Twilio account."""

    class Meta:
        model = Channel

    organization = factory.SubFactory(OrganizationFactory)
    kind = "twilio_whatsapp"
    name = "WhatsApp"
    config = factory.LazyFunction(lambda: {"account_sid": TEST_ACCOUNT_SID, "sender": TEST_SENDER})
    secrets = factory.LazyFunction(lambda: {"auth_token": TEST_AUTH_TOKEN})


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Customer {n}")
    phone = factory.Sequence(lambda n: f"+6012345{n:04d}")
    email = factory.LazyAttribute(lambda c: f"{c.name.lower().replace(' ', '.')}@example.com")
    whatsapp_opt_in = True
    whatsapp_opt_in_at = factory.LazyFunction(timezone.now)
    whatsapp_opt_in_source = "test"


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    organization = factory.SelfAttribute("channel.organization")
    channel = factory.SubFactory(ChannelFactory)
    contact = factory.SubFactory(ContactFactory, organization=factory.SelfAttribute("..organization"))
    last_message_at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    organization = factory.SelfAttribute("conversation.organization")
    channel = factory.SelfAttribute("conversation.channel")
    direction = "inbound"
    type = "text"
    text = factory.Sequence(lambda n: f"Message {n}")
    status = factory.LazyAttribute(lambda m: "received" if m.direction == "inbound" else "sent")
    sender_kind = factory.LazyAttribute(lambda m: "contact" if m.direction == "inbound" else "agent")
    created_at = factory.LazyFunction(timezone.now)


def policy_for(kind: str):
    """The policy of a kind of channel, from the catalog."""
    from apps.providers import catalog

    return catalog.KINDS[kind].policy
