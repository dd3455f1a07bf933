from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        SNOOZED = "snoozed", "Snoozed"
        RESOLVED = "resolved", "Resolved"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="conversations")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="conversations")
    channel = models.ForeignKey("providers.Channel", on_delete=models.CASCADE, related_name="conversations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    priority = models.PositiveSmallIntegerField(default=0)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    # Denormalized so the list needs no per-row message query.
    last_message_preview = models.CharField(max_length=200, blank=True)
    # Kinds with threads (email): the thread this conversation is (its first message's id), and its
    # subject. Empty for chat channels: one open conversation per contact and channel.
    thread = models.CharField(max_length=255, blank=True, default="")
    subject = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Two webhooks racing for a new contact still make one conversation (per thread).
            models.UniqueConstraint(
                fields=["contact", "channel", "thread"], condition=~Q(status="resolved"), name="one_open_conversation"
            ),
        ]
        # The list orders by last_message_at DESC NULLS LAST, id DESC (core.pagination); the indexes
        # must say NULLS LAST too, or PostgreSQL sorts every conversation of the organization to
        # show fifty (docs/benchmarks.md).
        indexes = [
            models.Index(
                F("organization"), F("last_message_at").desc(nulls_last=True), F("id").desc(), name="conv_org_recent"
            ),
            models.Index(
                F("organization"), F("status"), F("last_message_at").desc(nulls_last=True), F("id").desc(),
                name="conv_org_status_recent",
            ),
            models.Index(
                F("organization"), F("assignee"), F("last_message_at").desc(nulls_last=True), F("id").desc(),
                name="conv_org_assignee_recent",
            ),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk}"


class ConversationRead(models.Model):
    """How far one agent has read a conversation: drives unread badges per agent."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="reads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    last_read_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "user"], name="one_read_marker")]


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Type(models.TextChoices):
        TEXT = "text", "Text"
        IMAGE = "image", "Image"
        DOCUMENT = "document", "Document"
        AUDIO = "audio", "Audio"
        VIDEO = "video", "Video"
        LOCATION = "location", "Location"
        TEMPLATE = "template", "Template"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"
        RECEIVED = "received", "Received"
        # The request may have reached the provider (timeout after sending): never resent blindly.
        UNKNOWN = "unknown", "Unknown"

    class SenderKind(models.TextChoices):
        CONTACT = "contact", "Contact"
        AGENT = "agent", "Agent"
        BOT = "bot", "Bot"

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    channel = models.ForeignKey("providers.Channel", on_delete=models.CASCADE, related_name="+")
    direction = models.CharField(max_length=10, choices=Direction.choices)
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.TEXT)
    text = models.TextField(blank=True)
    location = models.JSONField(null=True, blank=True)
    # Reactions shown on the message: [{"emoji": "❤", "by": "contact" | "agent", "at": iso}].
    reactions = models.JSONField(default=list, blank=True)
    # The customer unsent (deleted) the message; we keep the row and show that it was removed.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The customer edited the message (Telegram): `text` is the latest version, shown "edited".
    edited_at = models.DateTimeField(null=True, blank=True)
    # Reply buttons under the message (the channel's policy.max_buttons): [{"text": "Yes"}, ...].
    buttons = models.JSONField(default=list, blank=True)
    # Template sends (outside the reply window): {"id", "provider_id", "variables"}.
    template = models.JSONField(null=True, blank=True)
    # What the kind shows beside the text (email: subject, from, to, cc, sanitized HTML, the full
    # text with its quoted history, whether a machine sent it). None for chat messages.
    details = models.JSONField(null=True, blank=True)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    client_token = models.CharField(max_length=100, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    error_code = models.CharField(max_length=40, blank=True)
    error_reason = models.CharField(max_length=500, blank=True)
    sender_kind = models.CharField(max_length=10, choices=SenderKind.choices)
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    # Outbox bookkeeping: delivery attempts, when the next may run, and the claim of a worker.
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # Set (and committed) just before the provider is called: a lease that expires with it set
    # means the provider may have the message, so the sweep marks it unknown instead of resending.
    attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_id"], condition=Q(external_id__isnull=False), name="unique_external_id"
            ),
            models.UniqueConstraint(
                fields=["organization", "client_token"],
                condition=Q(client_token__isnull=False),
                name="unique_client_token",
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at", "id"], name="msg_conversation_time"),
            models.Index(fields=["status", "next_attempt_at"], name="msg_outbox", condition=Q(status__in=["pending", "sending"])),
        ]

    def __str__(self) -> str:
        return f"Message {self.pk} ({self.direction}, {self.status})"

    @property
    def is_outbound(self) -> bool:
        return self.direction == self.Direction.OUTBOUND


class Attachment(models.Model):
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to="attachments/%Y/%m/", max_length=300)
    # Where the provider had it (inbound), kept for the record; we always serve our own copy.
    source_url = models.URLField(max_length=1000, blank=True)
    content_type = models.CharField(max_length=100)
    filename = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.filename

    @property
    def category(self) -> str:
        major = self.content_type.split("/")[0]
        return {"image": "image", "audio": "audio", "video": "video"}.get(major, "document")
