from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef


class Contact(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    # E.164 (+60123456789) or empty; validated by services.phone_normalize.
    phone = models.CharField(max_length=20, blank=True, db_index=True)
    # Graph API profile pictures are long signed CDN URLs.
    avatar_url = models.URLField(max_length=1000, blank=True)
    custom_attributes = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "name"])]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name or self.phone or self.email or "User"

    def consent(self, kind: str) -> "ContactConsent":
        """The contact's consent on a kind of channel (an identity kind: "whatsapp", "phone" for
        SMS...); an unsaved, empty one when nothing was ever recorded. Reads prefetched
        `consents` when the query prefetched them."""
        cached = getattr(self, "_prefetched_objects_cache", {}).get("consents")
        if cached is not None:
            found = next((consent for consent in cached if consent.kind == kind), None)
        else:
            found = self.consents.filter(kind=kind).first() if self.pk else None
        return found or ContactConsent(organization_id=self.organization_id, contact=self, kind=kind)

    @property
    def whatsapp_consent(self) -> "ContactConsent":
        return self.consent(ContactIdentity.Kind.WHATSAPP)

    @property
    def whatsapp_eligible(self) -> bool:
        return bool(self.phone and self.whatsapp_consent.eligible)


class ContactIdentity(models.Model):
    """How a contact is addressed on one kind of channel (phone, WhatsApp id, PSID, chat id, email)."""

    class Kind(models.TextChoices):
        PHONE = "phone", "Phone"
        WHATSAPP = "whatsapp", "WhatsApp"
        MESSENGER = "messenger", "Messenger PSID"
        INSTAGRAM = "instagram", "Instagram IGSID"
        TELEGRAM = "telegram", "Telegram chat"
        EMAIL = "email", "Email"
        SANDBOX = "sandbox", "Sandbox"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    # An addressing scheme a channel kind's policy names (its `identity_kind`): a plain string, so
    # a new kind of channel needs no migration; `Kind` lists the known ones and their labels.
    kind = models.CharField(max_length=20)
    address = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "kind", "address"], name="unique_identity_per_org"),
        ]
        verbose_name_plural = "contact identities"

    def __str__(self) -> str:
        return f"{self.kind}:{self.address}"

    @property
    def kind_label(self) -> str:
        return kind_label(self.kind)


def kind_label(kind: str) -> str:
    return ContactIdentity.Kind(kind).label if kind in ContactIdentity.Kind.values else kind.replace("_", " ").title()


class ContactConsent(models.Model):
    """A contact's consent on one kind of channel, by the identity kind that addresses them there
    ("whatsapp", "phone" for SMS, "telegram", "email"...): STOP on SMS is recorded for "phone"
    only, and WhatsApp eligibility reads "whatsapp". Opted in (when, how), opted out (when, why)
    and blocked (when, why), and who changed it last (an agent; empty for the contact or the
    provider)."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    kind = models.CharField(max_length=20)
    opted_in = models.BooleanField(default=False)
    opted_in_at = models.DateTimeField(null=True, blank=True)
    opt_in_source = models.CharField(max_length=40, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)
    opt_out_reason = models.CharField(max_length=200, blank=True)
    blocked_at = models.DateTimeField(null=True, blank=True)
    blocked_reason = models.CharField(max_length=200, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact", "kind"], name="one_consent_per_kind")]
        indexes = [models.Index(fields=["organization", "kind", "opted_in"], name="consent_org_kind")]

    def __str__(self) -> str:
        return f"{self.kind} consent of contact {self.contact_id}"

    @property
    def eligible(self) -> bool:
        """We may write: opted in, and neither unsubscribed since nor blocked."""
        return self.opted_in and self.opted_out_at is None and self.blocked_at is None

    @property
    def kind_label(self) -> str:
        return kind_label(self.kind)


def consent_eligible(kind: str) -> Exists:
    """Contacts that opted in on this kind of channel and neither unsubscribed nor blocked since."""
    return Exists(
        ContactConsent.objects.filter(
            contact=OuterRef("pk"), kind=kind, opted_in=True, opted_out_at__isnull=True, blocked_at__isnull=True
        )
    )
