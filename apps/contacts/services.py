from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.contacts.models import Contact, ContactConsent, ContactIdentity
from apps.core.phones import phone_normalize


@transaction.atomic
def contact_create(*, organization, name: str = "", email: str = "", phone: str = "", whatsapp_opt_in: bool = False,
                   opt_in_source: str = "agent", custom_attributes: dict | None = None, by=None) -> Contact:
    phone = phone_normalize(phone)
    contact = Contact.objects.create(
        organization=organization,
        name=name.strip(),
        email=email.strip().lower(),
        phone=phone,
        custom_attributes=custom_attributes or {},
    )
    if whatsapp_opt_in:
        consent_opt_in(contact=contact, kind=ContactIdentity.Kind.WHATSAPP, source=opt_in_source, by=by)
    _identities_sync(contact)
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, by=None, **fields) -> Contact:
    """Update what was given. A new phone keeps the history with the contact; future sends
    go to the new number, and replies from the old one still find this contact.
    `whatsapp_opt_in` records (or withdraws) the WhatsApp consent, with `opt_in_source`."""
    if "phone" in fields:
        fields["phone"] = phone_normalize(fields["phone"])
    if "email" in fields:
        fields["email"] = fields["email"].strip().lower()
    source = fields.pop("opt_in_source", "agent")
    whatsapp_opt_in = fields.pop("whatsapp_opt_in", None)
    for name, value in fields.items():
        setattr(contact, name, value)
    contact.save()
    if whatsapp_opt_in is not None and whatsapp_opt_in != contact.whatsapp_consent.opted_in:
        if whatsapp_opt_in:
            consent_opt_in(contact=contact, kind=ContactIdentity.Kind.WHATSAPP, source=source, by=by)
        else:
            consent_withdraw(contact=contact, kind=ContactIdentity.Kind.WHATSAPP, by=by)
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
    try:
        with transaction.atomic():
            contact = Contact.objects.create(organization=organization, name=name[:200], phone=phone)
            ContactIdentity.objects.create(organization=organization, contact=contact, kind=kind, address=address)
            # They wrote to us first: that is their consent to be answered on this channel.
            consent_opt_in(contact=contact, kind=kind, source="contact_wrote_first")
    except IntegrityError:
        identity = ContactIdentity.objects.select_related("contact").get(
            organization=organization, kind=kind, address=address
        )
        return identity.contact, False
    return contact, True


# Consent, per kind of channel ----------------------------------------------------------------


def _consent_update(*, contact: Contact, kind: str, by=None, **fields) -> ContactConsent:
    consent, _ = ContactConsent.objects.update_or_create(
        contact=contact, kind=kind, defaults={**fields, "organization_id": contact.organization_id, "changed_by": by}
    )
    # A prefetched list on this instance would now be stale.
    getattr(contact, "_prefetched_objects_cache", {}).pop("consents", None)
    return consent


def consent_opt_in(*, contact: Contact, kind: str, source: str, by=None) -> ContactConsent:
    """The contact agreed to hear from us on this kind of channel (an agent recorded it, they
    wrote first, they replied START): an earlier opt-out no longer applies."""
    return _consent_update(contact=contact, kind=kind, by=by, opted_in=True, opted_in_at=timezone.now(),
                           opt_in_source=source[:40], opted_out_at=None, opt_out_reason="")


def consent_opt_out(*, contact: Contact, kind: str, reason: str, by=None) -> ContactConsent:
    """The contact unsubscribed on this kind of channel (STOP, or the provider said so)."""
    return _consent_update(contact=contact, kind=kind, by=by, opted_in=False, opted_out_at=timezone.now(),
                           opt_out_reason=reason[:200])


def consent_withdraw(*, contact: Contact, kind: str, by=None) -> ContactConsent:
    """An agent took back a consent recorded by mistake (no unsubscribe happened)."""
    return _consent_update(contact=contact, kind=kind, by=by, opted_in=False)


def consent_block(*, contact: Contact, kind: str, reason: str, by=None) -> ContactConsent:
    """The contact blocked us on this kind of channel (the provider said so)."""
    return _consent_update(contact=contact, kind=kind, by=by, blocked_at=timezone.now(), blocked_reason=reason[:200])


def consent_unblock(*, contact: Contact, kind: str, by=None) -> ContactConsent:
    """The contact let us write again (unblocked the bot)."""
    return _consent_update(contact=contact, kind=kind, by=by, blocked_at=None, blocked_reason="")


def contact_attributes_merge(*, contact: Contact, attributes) -> bool:
    """Keep what a provider tells us about the contact (their Telegram username, the deep link
    they came through) in their custom attributes, each under its own name: the latest value
    wins, attributes of other names are left alone. Writes only when something changed."""
    given = {str(name): str(value)[:500] for name, value in (attributes or {}).items() if name and value}
    if not given or all((contact.custom_attributes or {}).get(name) == value for name, value in given.items()):
        return False
    with transaction.atomic():
        locked = Contact.objects.select_for_update().filter(pk=contact.pk).values_list("custom_attributes", flat=True)
        current = dict(locked.first() or {})
        merged = {**current, **given}
        if merged != current:
            Contact.objects.filter(pk=contact.pk).update(custom_attributes=merged, updated_at=timezone.now())
        contact.custom_attributes = merged
    return merged != current


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
