from typing import Protocol

from django.db.models import Exists, OuterRef, Q, QuerySet

from apps.contacts.models import Contact, ContactConsent, ContactIdentity, consent_eligible
from apps.core.errors import NotFound


class Reach(Protocol):
    """What contacts need to know of a kind of channel to say who it can reach (a channel
    kind's policy has these; contacts know nothing else of channels)."""

    identity_kind: str  # the ContactIdentity.Kind that addresses a contact there
    needs_phone: bool  # the contact's phone is the address
    needs_opt_in: bool  # recorded consent is required


def contact_list(*, organization, search: str = "") -> QuerySet[Contact]:
    contacts = Contact.objects.filter(organization=organization)
    search = search.strip()
    if search:
        digits = "".join(ch for ch in search if ch.isdigit())
        condition = Q(name__icontains=search) | Q(email__icontains=search)
        if digits:
            condition |= Q(phone__contains=digits)
        contacts = contacts.filter(condition)
    return contacts.order_by("name", "pk")


def contact_eligible_list(*, organization, policy: Reach, search: str = "") -> QuerySet[Contact]:
    """Contacts a kind of channel may message: never one who unsubscribed from it or blocked
    it; WhatsApp also wants a recorded opt-in, phone channels a phone, and the others an address
    of their kind (a Telegram chat, a PSID: the person wrote there first)."""
    contacts = contact_list(organization=organization, search=search)
    if policy.needs_opt_in:
        contacts = contacts.filter(consent_eligible(policy.identity_kind))
    else:
        refused = ContactConsent.objects.filter(contact=OuterRef("pk"), kind=policy.identity_kind).filter(
            Q(opted_out_at__isnull=False) | Q(blocked_at__isnull=False)
        )
        contacts = contacts.exclude(Exists(refused))
    if policy.needs_phone:
        contacts = contacts.exclude(phone="")
    else:
        contacts = contacts.filter(contact_has_address(policy))
    return contacts


def contact_has_address(policy: Reach) -> Exists:
    return Exists(ContactIdentity.objects.filter(contact=OuterRef("pk"), kind=policy.identity_kind))


def contact_id_by_address(*, organization_id: int, kind: str, address: str) -> int | None:
    """The contact behind an address on a kind of channel (a PSID, a phone...), or None."""
    return (
        ContactIdentity.objects.filter(organization_id=organization_id, kind=kind, address=address)
        .values_list("contact_id", flat=True)
        .first()
    )


def contact_reachable(*, contact: Contact, policy: Reach) -> bool:
    """Whether the contact has an address on a kind of channel that is not addressed by phone."""
    return policy.needs_phone or contact.identities.filter(kind=policy.identity_kind).exists()


def contact_address(*, contact: Contact, policy: Reach) -> str:
    """Where to reach a contact on a kind of channel: the phone (WhatsApp, SMS), else their
    newest identity of that kind (a PSID, a chat id, an address)."""
    if policy.needs_phone:
        return contact.phone
    identity = contact.identities.filter(kind=policy.identity_kind).order_by("-pk").first()
    return identity.address if identity else ""


def contact_get(*, organization, contact_id) -> Contact:
    contact = Contact.objects.filter(organization=organization, pk=contact_id).first()
    if contact is None:
        raise NotFound("Contact not found.")
    return contact


def contact_unnamed(*, contact_id: int) -> Contact | None:
    """A contact nobody has named yet (enrichment only fills in what is empty)."""
    return Contact.objects.filter(pk=contact_id, name="").first()
