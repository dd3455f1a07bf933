import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.accounts.models import Membership, Organization
from apps.contacts.models import Contact, ContactConsent
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
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Customer {n}")
    phone = factory.Sequence(lambda n: f"+6012345{n:04d}")
    email = factory.LazyAttribute(lambda c: f"{c.name.lower().replace(' ', '.')}@example.com")

    @factory.post_generation
    def whatsapp(contact, create, extracted, **kwargs):
        """The contact's WhatsApp consent: opted in by default. `whatsapp_opt_in=False`,
        `whatsapp_unsubscribed_at=...`, `whatsapp_blocked_at=...` and their reasons set it as the
        contact's `whatsapp_*` columns did (consent is now a row per kind of channel)."""
        if not create:
            return
        fields = {
            "opted_in": kwargs.get("opt_in", True),
            "opted_in_at": kwargs.get("opt_in_at", timezone.now()),
            "opt_in_source": kwargs.get("opt_in_source", "test"),
            "opted_out_at": kwargs.get("unsubscribed_at"),
            "opt_out_reason": kwargs.get("unsubscribed_reason", ""),
            "blocked_at": kwargs.get("blocked_at"),
            "blocked_reason": kwargs.get("blocked_reason", ""),
        }
        if fields["opted_in"] or fields["opted_out_at"] or fields["blocked_at"]:
            ContactConsent.objects.create(organization_id=contact.organization_id, contact=contact, kind="whatsapp",
                                          **fields)

    @classmethod
    def _generate(cls, strategy, params):
        # The old column names, as the tests write them, become the consent's parameters.
        for old in ("opt_in", "opt_in_at", "opt_in_source", "unsubscribed_at", "unsubscribed_reason", "blocked_at",
                    "blocked_reason"):
            if f"whatsapp_{old}" in params:
                params[f"whatsapp__{old}"] = params.pop(f"whatsapp_{old}")
        return super()._generate(strategy, params)


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
