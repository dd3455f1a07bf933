import re

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.utils.text import Truncator

from apps.core.admin import OrganizationScopedAdmin
from apps.core.errors import ServiceError
from apps.providers import inbound, services
from apps.providers.forms import TWILIO_KINDS, ChannelAdminForm
from apps.providers.models import Channel, InboundEvent, MetaAppConfig


@admin.register(Channel)
class ChannelAdmin(OrganizationScopedAdmin):
    form = ChannelAdminForm
    list_display = ["name", "organization", "kind", "status", "status_reason", "auth_token_state", "updated_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "organization__name", "uuid"]
    list_select_related = ["organization"]
    readonly_fields = ["uuid", "status", "status_reason", "auth_token_state", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["organization", "kind", "name", "uuid", "enabled", "status", "status_reason"]}),
        ("Provider account", {"fields": ["account_sid", "sender", "auth_token_state", "replace_auth_token"]}),
        ("Behaviour", {"fields": ["settings"], "classes": ["collapse"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="Auth token")
    def auth_token_state(self, channel: Channel) -> str:
        # Says whether a token is stored; never the token, not even part of it.
        return "set" if channel.pk and channel.secrets.get("auth_token") else "not set"

    def save_model(self, request, obj, form, change):
        obj.save()
        if obj.kind in TWILIO_KINDS:
            services.channel_configure_twilio(
                channel=obj,
                account_sid=form.cleaned_data["account_sid"],
                sender=form.cleaned_data["sender"],
                auth_token=form.new_auth_token,
                enabled=form.cleaned_data["enabled"],
            )
            obj.refresh_from_db()
        else:
            status = Channel.Status.ACTIVE if form.cleaned_data["enabled"] else Channel.Status.DISABLED
            if status != obj.status and not (status == Channel.Status.ACTIVE and obj.status == Channel.Status.ERROR):
                Channel.objects.filter(pk=obj.pk).update(status=status, status_reason="")


@admin.register(InboundEvent)
class InboundEventAdmin(OrganizationScopedAdmin):
    list_display = ["id", "provider", "kind", "state", "channel", "received_at", "attempts", "short_error"]
    list_filter = ["state", "provider", "kind", "received_at"]
    search_fields = ["event_id", "ref", "destination"]
    list_select_related = ["channel"]
    date_hierarchy = "received_at"
    actions = ["replay_events"]
    readonly_fields = [
        "provider",
        "destination",
        "channel",
        "organization",
        "event_id",
        "kind",
        "ref",
        "body",
        "state",
        "received_at",
        "processed_at",
        "attempts",
        "last_error",
    ]

    @admin.display(description="Last error")
    def short_error(self, event: InboundEvent) -> str:
        return Truncator(event.last_error).chars(80)

    def has_add_permission(self, request) -> bool:
        # Events come from providers only.
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Replay selected events", permissions=["view"])
    def replay_events(self, request, queryset):
        replayed, refused, failed = 0, 0, 0
        for event in queryset.order_by("received_at", "pk"):
            try:
                inbound.event_replay(event)
            except ServiceError:
                refused += 1
            except Exception:  # noqa: BLE001 - recorded on the event (state failed, last_error)
                failed += 1
            else:
                replayed += 1
        if replayed:
            self.message_user(request, f"Replayed {replayed} event(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Skipped {refused} event(s) already processed.", messages.WARNING)
        if failed:
            self.message_user(request, f"{failed} event(s) failed again; see their last error.", messages.ERROR)


class MetaAppConfigForm(forms.ModelForm):
    replace_app_secret = forms.CharField(
        label="Replace app secret",
        required=False,
        strip=True,
        # render_value=False: a submitted secret is not echoed back even when the form has errors.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="From the Meta app's Settings → Basic. Leave empty to keep the stored secret.",
    )

    class Meta:
        model = MetaAppConfig
        fields = ["app_id", "verify_token", "graph_version"]

    def clean_graph_version(self) -> str:
        version = self.cleaned_data["graph_version"].strip()
        if not re.fullmatch(r"v\d+\.\d+", version):
            raise forms.ValidationError('A Graph API version looks like "v21.0".')
        return version


@admin.register(MetaAppConfig)
class MetaAppConfigAdmin(admin.ModelAdmin):
    """The system-wide Meta app: superusers only; the app secret is write-only."""

    form = MetaAppConfigForm
    list_display = ["__str__", "graph_version", "app_secret_state", "updated_at"]
    readonly_fields = ["app_secret_state", "webhook_url", "updated_at"]
    fields = ["app_id", "app_secret_state", "replace_app_secret", "verify_token", "graph_version", "webhook_url", "updated_at"]

    @admin.display(description="App secret")
    def app_secret_state(self, config: MetaAppConfig) -> str:
        return "set" if config.pk and config.app_secret else "not set"

    @admin.display(description="Webhook callback URL")
    def webhook_url(self, config: MetaAppConfig) -> str:
        return f"{settings.PUBLIC_BASE_URL}/webhooks/meta/"

    def save_model(self, request, obj, form, change):
        secret = form.cleaned_data.get("replace_app_secret")
        if secret:
            obj.secrets = {**obj.secrets, "app_secret": secret}
        obj.save()

    def changelist_view(self, request, extra_context=None):
        # The one row always exists, so there is something to open (adding is off).
        if self.has_view_permission(request):
            MetaAppConfig.current()
        return super().changelist_view(request, extra_context)

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
