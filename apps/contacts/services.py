from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.contacts.models import Contact, ContactIdentity
from apps.core.phones import phone_normalize


@transaction.atomic
def contact_create(*, organization, name: str = "", email: str = "", phone: str = "", whatsapp_opt_in: bool = False,
                   opt_in_source: str = "agent", custom_attributes: dict | None = None) -> Contact:
    phone = phone_normalize(phone)
    now = timezone.now()
    contact = Contact.objects.create(
        organization=organization,
        name=name.strip(),
        email=email.strip().lower(),
        phone=phone,
        custom_attributes=custom_attributes or {},
        whatsapp_opt_in=whatsapp_opt_in,
        whatsapp_opt_in_at=now if whatsapp_opt_in else None,
        whatsapp_opt_in_source=opt_in_source if whatsapp_opt_in else "",
    )
    _identities_sync(contact)
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, **fields) -> Contact:
    """Update what was given. A new phone keeps the history with the contact; future sends
    go to the new number, and replies from the old one still find this contact."""
    if "phone" in fields:
        fields["phone"] = phone_normalize(fields["phone"])
    if "email" in fields:
        fields["email"] = fields["email"].strip().lower()
    if "whatsapp_opt_in" in fields and fields["whatsapp_opt_in"] != contact.whatsapp_opt_in:
        if fields["whatsapp_opt_in"]:
            contact.whatsapp_opt_in_at = timezone.now()
            contact.whatsapp_opt_in_source = fields.pop("opt_in_source", "agent")
            contact.whatsapp_unsubscribed_at = None
            contact.whatsapp_unsubscribed_reason = ""
    fields.pop("opt_in_source", None)
    for name, value in fields.items():
        setattr(contact, name, value)
    contact.save()
    _identities_sync(contact)
    return contact


def _identities_sync(contact: Contact) -> None:
    addresses = [(ContactIdentity.Kind.WHATSAPP, contact.phone), (ContactIdentity.Kind.PHONE, contact.phone),
                 (ContactIdentity.Kind.EMAIL, contact.email)]
    for kind, address in addresses:
        if address:
            identity_attach(contact=contact, kind=kind, address=address)


def identity_attach(*, contact: Contact, kind: str, address: str) -> ContactIdentity | None:
    """Attach an address to a contact unless another contact of the organization already has it."""
    try:
        with transaction.atomic():
            identity, _ = ContactIdentity.objects.get_or_create(
                organization_id=contact.organization_id, kind=kind, address=address, defaults={"contact": contact}
            )
    except IntegrityError:
        return None
    return identity


def contact_resolve(*, organization, kind: str, address: str, name: str = "", phone: str = "") -> tuple[Contact, bool]:
    """The contact behind an address on a channel, created when unknown. Safe when two webhooks
    for the same new sender race: the identity's unique constraint makes one contact."""
    identity = ContactIdentity.objects.select_related("contact").filter(
        organization=organization, kind=kind, address=address
    ).first()
    if identity:
        return identity.contact, False
    if phone:
        existing = Contact.objects.filter(organization=organization, phone=phone).order_by("pk").first()
        if existing:
            identity_attach(contact=existing, kind=kind, address=address)
            return existing, False
    now = timezone.now()
    try:
        with transaction.atomic():
            contact = Contact.objects.create(
                organization=organization,
                name=name[:200],
                phone=phone,
                # They wrote to us first: that is their consent to be answered on this channel.
                whatsapp_opt_in=kind == ContactIdentity.Kind.WHATSAPP,
                whatsapp_opt_in_at=now if kind == ContactIdentity.Kind.WHATSAPP else None,
                whatsapp_opt_in_source="contact_wrote_first" if kind == ContactIdentity.Kind.WHATSAPP else "",
            )
            ContactIdentity.objects.create(organization=organization, contact=contact, kind=kind, address=address)
    except IntegrityError:
        identity = ContactIdentity.objects.select_related("contact").get(
            organization=organization, kind=kind, address=address
        )
        return identity.contact, False
    return contact, True


def contact_whatsapp_opt_out(*, contact: Contact, reason: str) -> None:
    Contact.objects.filter(pk=contact.pk).update(
        whatsapp_opt_in=False, whatsapp_unsubscribed_at=timezone.now(), whatsapp_unsubscribed_reason=reason[:200]
    )


def contact_whatsapp_opt_in(*, contact: Contact, source: str) -> None:
    Contact.objects.filter(pk=contact.pk).update(
        whatsapp_opt_in=True,
        whatsapp_opt_in_at=timezone.now(),
        whatsapp_opt_in_source=source[:40],
        whatsapp_unsubscribed_at=None,
        whatsapp_unsubscribed_reason="",
    )


def contact_whatsapp_block(*, contact: Contact, reason: str) -> None:
    Contact.objects.filter(pk=contact.pk).update(whatsapp_blocked_at=timezone.now(), whatsapp_blocked_reason=reason[:200])


def consent_opt_out(*, contact: Contact, kind: str, reason: str) -> None:
    """The contact unsubscribed on this kind of channel (STOP, or the provider said so)."""
    if kind == ContactIdentity.Kind.WHATSAPP:
        contact_whatsapp_opt_out(contact=contact, reason=reason)


def consent_opt_in(*, contact: Contact, kind: str, source: str) -> None:
    if kind == ContactIdentity.Kind.WHATSAPP:
        contact_whatsapp_opt_in(contact=contact, source=source)


def consent_block(*, contact: Contact, kind: str, reason: str) -> None:
    """The contact blocked us on this kind of channel (the provider said so)."""
    if kind == ContactIdentity.Kind.WHATSAPP:
        contact_whatsapp_block(contact=contact, reason=reason)


def contact_enrich(*, contact: Contact, name: str = "", avatar_url: str = "") -> None:
    """Fill in a contact's name and picture from the provider's profile, only while nobody
    named the contact meanwhile. A picture is kept only as an https URL that fits."""
    max_length = Contact._meta.get_field("avatar_url").max_length
    fields = {"name": (name or "")[:200]}
    if avatar_url.startswith("https://") and len(avatar_url) <= max_length:
        fields["avatar_url"] = avatar_url
    fields = {key: value for key, value in fields.items() if value}
    if fields:
        Contact.objects.filter(pk=contact.pk, name="").update(**fields)
