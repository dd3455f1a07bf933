from django.contrib import admin
from django.utils.text import Truncator

from apps.conversations.models import Attachment, Conversation, Message
from apps.accounts.admin import OrganizationScopedAdmin


@admin.register(Conversation)
class ConversationAdmin(OrganizationScopedAdmin):
    list_display = ["id", "contact", "channel", "organization", "status", "assignee", "last_message_at"]
    list_filter = ["status", "channel__kind"]
    search_fields = ["contact__name", "contact__phone", "last_message_preview"]
    list_select_related = ["contact", "channel", "organization", "assignee"]
    raw_id_fields = ["contact", "assignee", "team"]
    readonly_fields = [
        "organization",
        "contact",
        "channel",
        "last_inbound_at",
        "last_message_at",
        "last_message_preview",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request) -> bool:
        # Conversations start from a message (inbound or a send), never from a blank form.
        return False


class AttachmentInline(admin.TabularInline):
    model = Attachment
    extra = 0
    fields = ["filename", "content_type", "size", "source_url", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(OrganizationScopedAdmin):
    """Read-mostly: messages are a record of what was said; only their deletion is allowed."""

    list_display = ["id", "conversation", "direction", "type", "status", "short_text", "error_code", "created_at"]
    list_filter = ["direction", "status", "type"]
    search_fields = ["text", "external_id", "client_token"]
    list_select_related = ["conversation"]
    date_hierarchy = "created_at"
    inlines = [AttachmentInline]

    @admin.display(description="Text")
    def short_text(self, message: Message) -> str:
        return Truncator(message.text).chars(60)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Message._meta.concrete_fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
