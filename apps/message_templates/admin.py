from django.contrib import admin

from apps.accounts.admin import OrganizationScopedAdmin
from apps.message_templates.models import MessageTemplate


@admin.register(MessageTemplate)
class MessageTemplateAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "language", "provider_template_id", "created_at"]
    list_filter = ["language"]
    search_fields = ["name", "body", "provider_template_id"]
    list_select_related = ["organization"]
