from django.db import models
from django.db.models import Q


class Contact(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    # E.164 (+60123456789) or empty; validated by services.phone_normalize.
    phone = models.CharField(max_length=20, blank=True, db_index=True)
    # Graph API profile pictures are long signed CDN URLs.
    avatar_url = models.URLField(max_length=1000, blank=True)
    custom_attributes = models.JSONField(default=dict, blank=True)

    # WhatsApp consent: opted in (how, when); unsubscribed (STOP) or blocked (provider said so).
    whatsapp_opt_in = models.BooleanField(default=False)
    whatsapp_opt_in_at = models.DateTimeField(null=True, blank=True)
    whatsapp_opt_in_source = models.CharField(max_length=40, blank=True)
    whatsapp_unsubscribed_at = models.DateTimeField(null=True, blank=True)
    whatsapp_unsubscribed_reason = models.CharField(max_length=200, blank=True)
    whatsapp_blocked_at = models.DateTimeField(null=True, blank=True)
    whatsapp_blocked_reason = models.CharField(max_length=200, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "name"])]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.name or self.phone or self.email or "User"

    @property
    def whatsapp_eligible(self) -> bool:
        return bool(
            self.phone
            and self.whatsapp_opt_in
            and self.whatsapp_unsubscribed_at is None
            and self.whatsapp_blocked_at is None
        )


WHATSAPP_ELIGIBLE = (
    ~Q(phone="") & Q(whatsapp_opt_in=True) & Q(whatsapp_unsubscribed_at__isnull=True) & Q(whatsapp_blocked_at__isnull=True)
)


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
    kind = models.CharField(max_length=20, choices=Kind.choices)
    address = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "kind", "address"], name="unique_identity_per_org"),
        ]
        verbose_name_plural = "contact identities"

    def __str__(self) -> str:
        return f"{self.kind}:{self.address}"
