import uuid

from django.db import models

from apps.core.crypto import EncryptedJSONField


def _kind_choices():
    from apps.providers import catalog  # the catalog's kinds import their modules, which read these models

    return catalog.kind_choices()


class Channel(models.Model):
    """One connected channel of an organization. Secrets live in `secrets`, encrypted at rest."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DISABLED = "disabled", "Disabled"
        ERROR = "error", "Error"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="channels")
    # One of the catalog's kinds (apps/providers/catalog.py); a callable, so a new kind needs no migration.
    kind = models.CharField(max_length=20, choices=_kind_choices)
    name = models.CharField(max_length=100)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=300, blank=True)
    # The provider's own id of this channel, where webhooks name it in their body rather than the
    # URL (Meta: page id, Instagram account id, WhatsApp phone number id). Routes those webhooks.
    address = models.CharField(max_length=100, blank=True)
    # Non-secret provider configuration (Twilio: account_sid, sender).
    config = models.JSONField(default=dict, blank=True)
    # Secret provider configuration (Twilio: auth_token). Write-only everywhere.
    secrets = EncryptedJSONField(blank=True, default=dict)
    # Behaviour switches (read receipts, typing indicators...).
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        indexes = [models.Index(fields=["organization", "kind"]), models.Index(fields=["kind", "address"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class MetaAppConfig(models.Model):
    """The one Meta app behind Messenger, Instagram and WhatsApp Cloud: system-wide, edited by a
    superuser in Django admin (no environment variables). Use `MetaAppConfig.current()`."""

    app_id = models.CharField(max_length=50, blank=True)
    # {"app_secret": ...}: signs webhooks and exchanges OAuth codes. Write-only.
    secrets = EncryptedJSONField(blank=True, default=dict)
    verify_token = models.CharField(max_length=200, blank=True, help_text="The string Meta sends back when verifying the webhook.")
    graph_version = models.CharField(max_length=10, default="v21.0")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Meta app configuration"
        verbose_name_plural = "Meta app configuration"

    def __str__(self) -> str:
        return f"Meta app {self.app_id or '(not set)'}"

    @classmethod
    def current(cls) -> "MetaAppConfig":
        config, _ = cls.objects.get_or_create(pk=1)
        return config

    @property
    def app_secret(self) -> str:
        return self.secrets.get("app_secret", "")

    @property
    def is_configured(self) -> bool:
        return bool(self.app_id and self.app_secret and self.verify_token)


class InboundEvent(models.Model):
    """A verified webhook event, stored before we answer the provider. Nothing is lost:
    processing is retried by a sweep and can be replayed from the admin."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        # A status for a provider id we have not recorded yet; applied when we record it.
        DEFERRED = "deferred", "Waiting for its message"
        FAILED = "failed", "Failed"

    provider = models.CharField(max_length=20)
    # Where the provider sent it: the channel uuid, or (Meta) the page / account / phone number id.
    destination = models.CharField(max_length=100)
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    organization = models.ForeignKey("accounts.Organization", null=True, blank=True, on_delete=models.CASCADE)
    event_id = models.CharField(max_length=255)
    kind = models.CharField(max_length=30)
    # The provider message id this event is about (for statuses that arrive before their message).
    ref = models.CharField(max_length=255, blank=True, db_index=True)
    body = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "destination", "event_id"], name="unique_inbound_event"),
        ]
        indexes = [models.Index(fields=["state", "received_at"])]

    def __str__(self) -> str:
        return f"{self.provider}:{self.kind}:{self.event_id}"


class MetaOAuthState(models.Model):
    """The server half of a Facebook Login `state`: single use, bound to the membership that
    started it, expiring quickly. Only the nonce's hash is kept."""

    membership = models.ForeignKey("accounts.Membership", on_delete=models.CASCADE, related_name="+")
    nonce_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Meta OAuth state {self.pk}"


class MetaPendingConnection(models.Model):
    """Facebook Login finished, the admin has not picked a page yet. The user token and page
    tokens wait here, encrypted, until a page is connected or the row expires."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    membership = models.ForeignKey("accounts.Membership", on_delete=models.CASCADE, related_name="+")
    # {"user_token": ..., "page_tokens": {page_id: token}}. Write-only.
    secrets = EncryptedJSONField(blank=True, default=dict)
    # [{"id", "name", "instagram_account_id", "instagram_username"}]: what the picker shows.
    pages = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Pending Meta connection {self.uuid}"
