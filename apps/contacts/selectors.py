from django.db.models import Q, QuerySet

from apps.contacts.models import WHATSAPP_ELIGIBLE, Contact
from apps.core.errors import NotFound
from apps.providers.policies import ChannelPolicy


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


def contact_eligible_list(*, organization, policy: ChannelPolicy, search: str = "") -> QuerySet[Contact]:
    """Contacts a channel with this policy may message: WhatsApp wants an opted-in, valid phone."""
    contacts = contact_list(organization=organization, search=search)
    if policy.needs_opt_in:
        contacts = contacts.filter(WHATSAPP_ELIGIBLE)
    elif policy.needs_phone:
        contacts = contacts.exclude(phone="")
    return contacts


def contact_get(*, organization, contact_id) -> Contact:
    contact = Contact.objects.filter(organization=organization, pk=contact_id).first()
    if contact is None:
        raise NotFound("Contact not found.")
    return contact
