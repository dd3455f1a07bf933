import re

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.utils.text import Truncator

from apps.accounts.admin import OrganizationScopedAdmin
from apps.core.errors import ServiceError
from apps.providers import catalog, events, services
from apps.providers.models import Channel, InboundEvent, MetaAppConfig

SECRET_STATE = "secret_state_"


class ChannelAdminForm(forms.ModelForm):
    """The channel and its kind's credentials (catalog). Secrets are write-only: the page says
    whether each is set and offers a field to replace it; the stored value never reaches it."""

    enabled = forms.BooleanField(label="Enabled", required=False, initial=True, help_text="Off: the channel does not send.")

    class Meta:
        model = Channel
        fields = ["organization", "kind", "name", "settings"]

    kind_key = ""  # set on the class built for one kind (ChannelAdmin.get_form)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["enabled"].initial = self.instance.status != Channel.Status.DISABLED
            self.fields["kind"].disabled = True  # a channel keeps its kind; connect a new one instead
        kind = catalog.kind_of(self.kind_key)
        for credential in kind.credentials if kind else ():
            if credential.secret:
                self.fields[f"replace_{credential.name}"] = forms.CharField(
                    label=f"Replace {credential.label[:1].lower()}{credential.label[1:]}",
                    required=False,
                    strip=True,
                    # render_value=False: a submitted secret is not echoed back even when the form has errors.
                    widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                    help_text=f"{credential.help} Leave empty to keep the stored value.".strip(),
                )
            else:
                self.fields[credential.name] = forms.CharField(
                    label=credential.label, required=False, max_length=credential.max_length, help_text=credential.help,
                    initial=(self.instance.config or {}).get(credential.name, "") if self.instance.pk else "",
                )

    def credential_values(self) -> dict:
        """What was submitted for the kind's credentials, by credential name."""
        kind = catalog.kind_of(self.kind_key)
        values = {}
        for credential in kind.credentials if kind else ():
            field = f"replace_{credential.name}" if credential.secret else credential.name
            values[credential.name] = self.cleaned_data.get(field, "") or ""
        return values

    def clean(self):
        cleaned = super().clean()
        if self.kind_key and not self.errors:
            stored = self.instance if self.instance.pk else Channel()
            try:
                services.credentials_clean(
                    self.kind_key, self.credential_values(), config=stored.config or {}, secrets=stored.secrets or {},
                    creating=not self.instance.pk,
                )
            except services.CredentialsInvalid as exc:
                for name, sentence in exc.fields.items():
                    secret = next((c.secret for c in catalog.KINDS[self.kind_key].credentials if c.name == name), False)
                    self.add_error(f"replace_{name}" if secret else name, sentence)
        return cleaned


@admin.register(Channel)
class ChannelAdmin(OrganizationScopedAdmin):
    form = ChannelAdminForm
    list_display = ["name", "organization", "kind", "status", "status_reason", "secrets_state", "updated_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "organization__name", "uuid"]
    list_select_related = ["organization"]

    def _kind(self, request, obj) -> str:
        if obj is not None and obj.pk:
            return obj.kind
        return request.POST.get("kind") or request.GET.get("kind") or ""

    def get_form(self, request, obj=None, change=False, **kwargs):
        kind = self._kind(request, obj)
        form = type(f"{kind.title().replace('_', '')}ChannelAdminForm", (ChannelAdminForm,), {"kind_key": kind})
        kwargs["fields"] = None
        return super().get_form(request, obj, change=change, form=form, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        kind = catalog.kind_of(self._kind(request, obj))
        secrets = [SECRET_STATE + c.name for c in kind.credentials if c.secret] if kind else []
        return ["uuid", "status", "status_reason", *secrets, "created_at", "updated_at"]

    def get_fieldsets(self, request, obj=None):
        kind = catalog.kind_of(self._kind(request, obj))
        credentials = []
        for credential in kind.credentials if kind else ():
            if credential.secret:
                credentials += [SECRET_STATE + credential.name, f"replace_{credential.name}"]
            else:
                credentials.append(credential.name)
        fieldsets = [(None, {"fields": ["organization", "kind", "name", "uuid", "enabled", "status", "status_reason"]})]
        if credentials:
            fieldsets.append(("Provider account", {"fields": credentials}))
        elif obj is None:
            fieldsets.append(("Provider account", {"fields": [], "description": "Choose the kind and save: its "
                                                   "credentials are asked for next."}))
        fieldsets += [("Behaviour", {"fields": ["settings"], "classes": ["collapse"]}),
                      (None, {"fields": ["created_at", "updated_at"]})]
        return fieldsets

    def __getattr__(self, name: str):
        # "set" / "not set" for each secret of the kind: never the secret, not even part of it.
        if name.startswith(SECRET_STATE):
            secret = name[len(SECRET_STATE):]
            credential = next((c for kind in catalog.KINDS.values() for c in kind.credentials if c.name == secret), None)

            def state(channel) -> str:
                return "set" if channel is not None and channel.pk and (channel.secrets or {}).get(secret) else "not set"

            state.short_description = credential.label if credential else secret
            return state
        raise AttributeError(name)

    @admin.display(description="Secrets")
    def secrets_state(self, channel: Channel) -> str:
        kind = catalog.kind_of(channel.kind)
        names = [c for c in kind.credentials if c.secret] if kind else []
        return ", ".join(f"{c.label}: {'set' if (channel.secrets or {}).get(c.name) else 'not set'}" for c in names)

    def save_model(self, request, obj, form, change):
        enabled = form.cleaned_data["enabled"]
        values = form.credential_values()
        if not change:
            try:
                created = services.channel_create(
                    organization=obj.organization, kind=obj.kind, name=obj.name, values=values, enabled=enabled,
                )
            except ServiceError as exc:
                if exc.code != "connect_failed":
                    raise
                # The provider refused to connect it (Telegram's setWebhook): kept in error with
                # the reason, so the admin can fix the credentials and save again.
                created = services.channel_create(
                    organization=obj.organization, kind=obj.kind, name=obj.name, values=values, enabled=False,
                )
                self._connect_failed(request, created, exc)
            Channel.objects.filter(pk=created.pk).update(settings=obj.settings or {})
            obj.pk, obj._state.adding = created.pk, False
            obj.refresh_from_db()
            return
        obj.save()
        try:
            services.channel_configure(channel=obj, values=values, enabled=enabled)
        except ServiceError as exc:
            if exc.code != "connect_failed":
                raise
            services.channel_configure(channel=obj, values=values, enabled=False)
            self._connect_failed(request, obj, exc)
        obj.refresh_from_db()

    def _connect_failed(self, request, channel: Channel, error: ServiceError) -> None:
        services.channel_mark_error(channel=channel, reason=error.message)
        self.message_user(request, f"Saved, but not connected: {error.message}", messages.ERROR)


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
                events.event_replay(event)
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
