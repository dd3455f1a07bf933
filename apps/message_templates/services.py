from django.db import IntegrityError, transaction

from apps.core.errors import ServiceError
from apps.message_templates.models import MessageTemplate


def message_template_create(
    *, organization, name: str, body: str, provider_template_id: str = "", language: str = "en"
) -> MessageTemplate:
    name = name.strip()
    if not name or not body.strip():
        raise ServiceError("template_incomplete", "A template needs a name and a text.")
    try:
        with transaction.atomic():
            return MessageTemplate.objects.create(
                organization=organization,
                name=name,
                body=body,
                provider_template_id=provider_template_id.strip(),
                language=language.strip() or "en",
            )
    except IntegrityError:
        raise ServiceError("template_exists", f"A template named “{name}” already exists.") from None


def message_template_variables(raw: dict | None) -> dict[str, str]:
    """Template variables as the provider wants them: string keys and string values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ServiceError("invalid_template_variables", "Template variables must be a set of names and values.")
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}
