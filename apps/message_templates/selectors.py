from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.message_templates.models import MessageTemplate


def message_template_list(*, organization_id: int, provider_only: bool = False) -> QuerySet[MessageTemplate]:
    """The organization's templates by name; `provider_only`: those a provider approved (sendable
    outside a reply window)."""
    templates = MessageTemplate.objects.filter(organization_id=organization_id)
    if provider_only:
        templates = templates.exclude(provider_template_id="")
    return templates.order_by("name", "pk")


def message_template_get(*, organization_id: int, template_id) -> MessageTemplate:
    template = (
        MessageTemplate.objects.filter(organization_id=organization_id, pk=template_id).first()
        if str(template_id).isdigit()
        else None
    )
    if template is None:
        raise NotFound("Template not found.")
    return template


def message_template_language(*, template_id: int) -> str | None:
    return MessageTemplate.objects.filter(pk=template_id).values_list("language", flat=True).first()
