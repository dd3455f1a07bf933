from django.db import models


class MessageTemplate(models.Model):
    """A pre-approved WhatsApp template (Twilio Content SID / Meta template name) or a canned reply.

    Template sends are the only sends allowed outside a channel's reply window.
    """

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="message_templates")
    name = models.CharField(max_length=100)
    # Text with {{1}}, {{2}} placeholders, shown to agents and stored on the message.
    body = models.TextField()
    # The provider's id: Twilio ContentSid (HX…) or a Meta template name. Empty = canned reply only.
    provider_template_id = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=10, default="en")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="unique_template_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_provider_template(self) -> bool:
        return bool(self.provider_template_id)

    def render(self, variables: dict[str, str]) -> str:
        text = self.body
        for key, value in variables.items():
            text = text.replace("{{%s}}" % key, value)
        return text
