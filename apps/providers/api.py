"""The channels API: what a member may see of the organization's channels, contacts eligible for
one, and (admins) configuring a Twilio WhatsApp channel.

Secrets are write-only: no response carries the auth token, not even masked.
"""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import IsOrganizationAdmin
from apps.contacts import selectors as contact_selectors
from apps.contacts.api import ContactOutputSerializer, contact_page
from apps.core.errors import ServiceError
from apps.providers import selectors, services
from apps.providers.forms import account_sid_clean, sender_clean
from apps.providers.models import Channel
from apps.providers.policies import POLICIES

ERRORS = {400: OpenApiTypes.OBJECT, 401: OpenApiTypes.OBJECT, 403: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}

# Where each kind of provider calls us (ARCHITECTURE.md, contracts).
WEBHOOK_PATHS = {
    "twilio_whatsapp": {"inbound": "/webhooks/twilio/{uuid}/", "status": "/webhooks/twilio/{uuid}/status/"},
    "twilio_sms": {"inbound": "/webhooks/twilio/{uuid}/", "status": "/webhooks/twilio/{uuid}/status/"},
    "meta_whatsapp": {"inbound": "/webhooks/meta/"},
    "messenger": {"inbound": "/webhooks/meta/"},
    "instagram": {"inbound": "/webhooks/meta/"},
    "telegram": {"inbound": "/webhooks/telegram/{uuid}/"},
    "email": {"inbound": "/webhooks/email/{uuid}/"},
}


class ChannelOutputSerializer(serializers.Serializer):
    class WebhooksSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ChannelWebhooks"

        inbound = serializers.URLField(required=False)
        status = serializers.URLField(required=False)

    class PolicySerializer(serializers.Serializer):
        class Meta:
            ref_name = "ChannelPolicy"

        label = serializers.CharField()
        text_limit = serializers.IntegerField(allow_null=True)
        reply_window_hours = serializers.FloatField(allow_null=True)
        accepted_media_types = serializers.ListField(child=serializers.CharField())
        max_attachments = serializers.IntegerField()

    class Meta:
        ref_name = "Channel"

    id = serializers.IntegerField()
    uuid = serializers.UUIDField()
    kind = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    status_reason = serializers.CharField()
    configured = serializers.SerializerMethodField()
    # Whether it sends now, and if not the sentence agents read ("WhatsApp is not configured…").
    ready = serializers.SerializerMethodField()
    not_ready_reason = serializers.SerializerMethodField()
    # Non-secret configuration only. The account SID is shown to admins, who configure it.
    account_sid = serializers.SerializerMethodField()
    sender = serializers.SerializerMethodField()
    webhooks = serializers.SerializerMethodField()
    policy = serializers.SerializerMethodField()

    def get_configured(self, channel) -> bool:
        return not services.channel_missing_configuration(channel)

    def get_ready(self, channel) -> bool:
        return services.channel_readiness(channel)[0]

    def get_not_ready_reason(self, channel) -> str:
        return services.channel_readiness(channel)[1]

    def get_account_sid(self, channel) -> str:
        return channel.config.get("account_sid", "") if self.context.get("admin") else ""

    def get_sender(self, channel) -> str:
        return channel.config.get("sender", "")

    @extend_schema_field(WebhooksSerializer)
    def get_webhooks(self, channel) -> dict:
        base = settings.PUBLIC_BASE_URL
        paths = WEBHOOK_PATHS.get(channel.kind, {})
        return {name: base + path.format(uuid=channel.uuid) for name, path in paths.items()}

    @extend_schema_field(PolicySerializer(allow_null=True))
    def get_policy(self, channel) -> dict | None:
        policy = POLICIES.get(channel.kind)
        if policy is None:
            return None
        window = policy.reply_window.total_seconds() / 3600 if policy.reply_window else None
        return {
            "label": policy.label,
            "text_limit": policy.text_limit,
            "reply_window_hours": window,
            "accepted_media_types": policy.accepted_types,
            "max_attachments": policy.max_attachments,
        }


def output_context(request) -> dict:
    return {"admin": request.membership.is_admin}


class TwilioUpdateInputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "TwilioChannelUpdateInput"

    account_sid = serializers.CharField(max_length=64, required=False, help_text="Twilio account SID (AC…).")
    sender = serializers.CharField(
        max_length=40, required=False, help_text='The WhatsApp sender, e.g. "whatsapp:+14155238886".'
    )
    auth_token = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="Write-only: never returned. Omit (or send empty) to keep the stored token.",
    )
    enabled = serializers.BooleanField(required=False)

    def validate_account_sid(self, value: str) -> str:
        try:
            return account_sid_clean(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_sender(self, value: str) -> str:
        try:
            return sender_clean(value, whatsapp=True)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class TwilioCreateInputSerializer(TwilioUpdateInputSerializer):
    class Meta:
        ref_name = "TwilioChannelCreateInput"

    name = serializers.CharField(max_length=100, default="WhatsApp")
    account_sid = serializers.CharField(max_length=64, help_text="Twilio account SID (AC…).")
    sender = serializers.CharField(max_length=40, help_text='The WhatsApp sender, e.g. "whatsapp:+14155238886".')
    auth_token = serializers.CharField(max_length=200, write_only=True, help_text="Write-only: never returned.")
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
        summary="Connect a Twilio WhatsApp channel (admins)",
        request=TwilioCreateInputSerializer,
        responses={201: ChannelOutputSerializer, **ERRORS},
    )
    def post(self, request):
        if not request.membership.is_admin:
            self.permission_denied(request, message=IsOrganizationAdmin.message)
        serializer = TwilioCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel = services.channel_create_twilio(organization=request.organization, **serializer.validated_data)
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
        summary="Configure a Twilio WhatsApp channel (admins)",
        description="An omitted or empty `auth_token` keeps the stored one.",
        request=TwilioUpdateInputSerializer,
        responses={200: ChannelOutputSerializer, **ERRORS},
    )
    def patch(self, request, channel_id: int):
        channel = selectors.channel_get(membership=request.membership, channel_id=channel_id)
        if not request.membership.is_admin:
            self.permission_denied(request, message=IsOrganizationAdmin.message)
        if channel.kind != Channel.Kind.TWILIO_WHATSAPP:
            raise ServiceError("not_twilio", "Only Twilio WhatsApp channels are configured here.")
        serializer = TwilioUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        channel = services.channel_configure_twilio(
            channel=channel,
            account_sid=data.get("account_sid", channel.config.get("account_sid", "")),
            sender=data.get("sender", channel.config.get("sender", "")),
            auth_token=data.get("auth_token") or None,
            enabled=data.get("enabled", channel.status != Channel.Status.DISABLED),
        )
        return Response(ChannelOutputSerializer(channel, context=output_context(request)).data)


class ChannelEligibleContactsApi(APIView):
    class PageSerializer(serializers.Serializer):
        class Meta:
            ref_name = "EligibleContactPage"

        results = ContactOutputSerializer(many=True)
        next = serializers.URLField(allow_null=True)
        previous = serializers.URLField(allow_null=True)
        empty_message = serializers.CharField(help_text="What to show when there are no results; empty otherwise.")

    @extend_schema(
        operation_id="channels_eligible_contacts_list",
        summary="Contacts this channel may message",
        description="WhatsApp: an opted-in contact with a valid phone, not unsubscribed nor blocked.",
        parameters=[
            OpenApiParameter("search", str, description="Part of the name, email or phone."),
            OpenApiParameter("cursor", str, description="Opaque cursor from `next` or `previous`."),
            OpenApiParameter("limit", int, description="Rows per page, 1 to 100 (default 25)."),
        ],
        responses={200: PageSerializer, **ERRORS},
    )
    def get(self, request, channel_id: int):
        channel = selectors.channel_get(membership=request.membership, channel_id=channel_id)
        policy = POLICIES.get(channel.kind)
        if policy is None:
            contacts = contact_selectors.contact_list(organization=request.organization).none()
        else:
            contacts = contact_selectors.contact_eligible_list(
                organization=request.organization, policy=policy, search=request.query_params.get("search", "")
            )
        response = contact_page(request, contacts)
        response.data["empty_message"] = "" if response.data["results"] else empty_message(policy, channel)
        return response


def empty_message(policy, channel: Channel) -> str:
    label = policy.label if policy else channel.get_kind_display()
    if policy is not None and policy.needs_opt_in:
        return f"No contacts with {label} opt-in found."
    if policy is not None and policy.needs_phone:
        return f"No contacts with a phone number found for {label}."
    return f"No contacts found for {label}."
