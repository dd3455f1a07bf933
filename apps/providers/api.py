"""The channels API: what a member may see of the organization's channels, and (admins)
connecting and configuring one of any kind in the catalog.

Secrets are write-only: no response carries one, not even masked; admins see whether each is
set. A kind's credentials are validated by its rules, in one place (services.credentials_clean).
"""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import IsOrganizationAdmin
from apps.providers import catalog, selectors, services
from apps.providers.models import Channel

ERRORS = {400: OpenApiTypes.OBJECT, 401: OpenApiTypes.OBJECT, 403: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}


class ChannelOutputSerializer(serializers.Serializer):
    class PolicySerializer(serializers.Serializer):
        class Meta:
            ref_name = "ChannelPolicy"

        label = serializers.CharField()
        text_limit = serializers.IntegerField(allow_null=True)
        reply_window_hours = serializers.FloatField(allow_null=True)
        accepted_media_types = serializers.ListField(child=serializers.CharField())
        max_attachments = serializers.IntegerField()
        max_buttons = serializers.IntegerField(help_text="Reply buttons a message may carry (0: none).")

    class Meta:
        ref_name = "Channel"

    id = serializers.IntegerField()
    uuid = serializers.UUIDField()
    kind = serializers.CharField()
    family = serializers.SerializerMethodField()
    name = serializers.CharField()
    status = serializers.CharField()
    status_reason = serializers.CharField()
    configured = serializers.SerializerMethodField()
    # Whether it sends now, and if not the sentence agents read ("WhatsApp is not configured…").
    ready = serializers.SerializerMethodField()
    not_ready_reason = serializers.SerializerMethodField()
    # The kind's non-secret settings (admins only: they configure them), and whether each
    # secret is stored.
    config = serializers.SerializerMethodField()
    secrets = serializers.SerializerMethodField()
    webhooks = serializers.SerializerMethodField()
    policy = serializers.SerializerMethodField()

    def get_family(self, channel) -> str:
        family = catalog.family_of(channel.kind)
        return family.key if family else ""

    def get_configured(self, channel) -> bool:
        return not services.channel_missing_configuration(channel)

    def get_ready(self, channel) -> bool:
        return services.channel_readiness(channel)[0]

    def get_not_ready_reason(self, channel) -> str:
        return services.channel_readiness(channel)[1]

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_config(self, channel) -> dict:
        kind = catalog.kind_of(channel.kind)
        if not self.context.get("admin") or kind is None:
            return {}
        return {c.name: str((channel.config or {}).get(c.name, "")) for c in kind.credentials if not c.secret}

    @extend_schema_field(serializers.DictField(child=serializers.ChoiceField(choices=["set", "not set"])))
    def get_secrets(self, channel) -> dict:
        kind = catalog.kind_of(channel.kind)
        if not self.context.get("admin") or kind is None:
            return {}
        return {c.name: "set" if (channel.secrets or {}).get(c.name) else "not set" for c in kind.credentials if c.secret}

    @extend_schema_field(serializers.DictField(child=serializers.URLField()))
    def get_webhooks(self, channel) -> dict:
        """Where the provider calls us, by name ("inbound", "status"): paste them in its console."""
        kind = catalog.kind_of(channel.kind)
        base = settings.PUBLIC_BASE_URL
        return {hook.name: base + hook.path.format(uuid=channel.uuid) for hook in (kind.webhooks if kind else ())}

    @extend_schema_field(PolicySerializer(allow_null=True))
    def get_policy(self, channel) -> dict | None:
        kind = catalog.kind_of(channel.kind)
        if kind is None:
            return None
        policy = kind.policy
        window = policy.reply_window.total_seconds() / 3600 if policy.reply_window else None
        return {
            "label": policy.label,
            "text_limit": policy.text_limit,
            "reply_window_hours": window,
            "accepted_media_types": policy.accepted_types,
            "max_attachments": policy.max_attachments,
            "max_buttons": policy.max_buttons,
        }


def output_context(request) -> dict:
    return {"admin": request.membership.is_admin}


class ChannelUpdateInputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "ChannelUpdateInput"

    name = serializers.CharField(max_length=100, required=False)
    credentials = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=2000),
        required=False,
        default=dict,
        help_text="The kind's settings by name (see the kinds in the catalog); secrets are write-only, and an "
        "omitted or empty secret keeps the stored one.",
    )
    enabled = serializers.BooleanField(required=False)


class ChannelCreateInputSerializer(ChannelUpdateInputSerializer):
    class Meta:
        ref_name = "ChannelCreateInput"

    kind = serializers.ChoiceField(choices=catalog.kind_choices())
    name = serializers.CharField(max_length=100, required=False, default="")
    enabled = serializers.BooleanField(default=True)


class ChannelListApi(APIView):
    @extend_schema(
        operation_id="channels_list",
        summary="The channels this member may use",
        responses={200: ChannelOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        channels = selectors.channel_list_visible(membership=request.membership)
        return Response(ChannelOutputSerializer(channels, many=True, context=output_context(request)).data)

    @extend_schema(
        operation_id="channels_create",
        summary="Connect a channel (admins)",
        request=ChannelCreateInputSerializer,
        responses={201: ChannelOutputSerializer, **ERRORS},
    )
    def post(self, request):
        if not request.membership.is_admin:
            self.permission_denied(request, message=IsOrganizationAdmin.message)
        serializer = ChannelCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        channel = services.channel_create(
            organization=request.organization, kind=data["kind"], name=data["name"], values=data["credentials"],
            enabled=data["enabled"],
        )
        output = ChannelOutputSerializer(channel, context=output_context(request))
        return Response(output.data, status=status.HTTP_201_CREATED)


class ChannelDetailApi(APIView):
    @extend_schema(
        operation_id="channels_retrieve", summary="One channel", responses={200: ChannelOutputSerializer, **ERRORS}
    )
    def get(self, request, channel_id: int):
        channel = selectors.channel_get(membership=request.membership, channel_id=channel_id)
        return Response(ChannelOutputSerializer(channel, context=output_context(request)).data)

    @extend_schema(
        operation_id="channels_update",
        summary="Configure a channel (admins)",
        description="Credentials not given keep their value; an omitted or empty secret keeps the stored one.",
        request=ChannelUpdateInputSerializer,
        responses={200: ChannelOutputSerializer, **ERRORS},
    )
    def patch(self, request, channel_id: int):
        channel = selectors.channel_get(membership=request.membership, channel_id=channel_id)
        if not request.membership.is_admin:
            self.permission_denied(request, message=IsOrganizationAdmin.message)
        serializer = ChannelUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        channel = services.channel_configure(
            channel=channel,
            values=data["credentials"],
            enabled=data.get("enabled", channel.status != Channel.Status.DISABLED),
            name=data.get("name"),
        )
        return Response(ChannelOutputSerializer(channel, context=output_context(request)).data)
