"""The contacts API: search, create, read and update the organization's contacts."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.contacts import selectors, services
from apps.core.pagination import page_link, paginate, parse_limit

ERRORS = {400: OpenApiTypes.OBJECT, 401: OpenApiTypes.OBJECT, 403: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT}
LIST_PARAMETERS = [
    OpenApiParameter("search", str, description="Part of the name, email or phone."),
    OpenApiParameter("cursor", str, description="Opaque cursor from `next` or `previous`."),
    OpenApiParameter("limit", int, description="Rows per page, 1 to 100 (default 25)."),
]


class ContactOutputSerializer(serializers.Serializer):
    class IdentitySerializer(serializers.Serializer):
        class Meta:
            ref_name = "ContactIdentity"

        kind = serializers.CharField()
        address = serializers.CharField()

    class ConsentSerializer(serializers.Serializer):
        """Consent on one kind of channel, by the identity kind that addresses the contact there."""

        class Meta:
            ref_name = "ContactConsent"

        kind = serializers.CharField()
        opted_in = serializers.BooleanField()
        opted_in_at = serializers.DateTimeField(allow_null=True)
        opt_in_source = serializers.CharField()
        opted_out_at = serializers.DateTimeField(allow_null=True)
        opt_out_reason = serializers.CharField()
        blocked_at = serializers.DateTimeField(allow_null=True)
        blocked_reason = serializers.CharField()
        eligible = serializers.BooleanField()

    class WhatsAppConsentSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WhatsAppConsent"

        opt_in = serializers.BooleanField()
        opt_in_at = serializers.DateTimeField(allow_null=True)
        opt_in_source = serializers.CharField()
        unsubscribed_at = serializers.DateTimeField(allow_null=True)
        unsubscribed_reason = serializers.CharField()
        blocked_at = serializers.DateTimeField(allow_null=True)
        blocked_reason = serializers.CharField()
        eligible = serializers.BooleanField()

    class Meta:
        ref_name = "Contact"

    id = serializers.IntegerField()
    name = serializers.CharField()
    display_name = serializers.CharField()
    email = serializers.CharField()
    phone = serializers.CharField()
    custom_attributes = serializers.JSONField()
    identities = IdentitySerializer(many=True, source="identities.all")
    whatsapp = serializers.SerializerMethodField()
    consents = ConsentSerializer(many=True, source="consents.all")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(WhatsAppConsentSerializer)
    def get_whatsapp(self, contact) -> dict:
        """The WhatsApp consent (`whatsapp_opt_in` in requests), in the seed's words."""
        consent = contact.whatsapp_consent
        return {
            "opt_in": consent.opted_in,
            "opt_in_at": consent.opted_in_at,
            "opt_in_source": consent.opt_in_source,
            "unsubscribed_at": consent.opted_out_at,
            "unsubscribed_reason": consent.opt_out_reason,
            "blocked_at": consent.blocked_at,
            "blocked_reason": consent.blocked_reason,
            "eligible": contact.whatsapp_eligible,
        }


def contact_page(request, contacts, extra: dict | None = None) -> Response:
    """A page of contacts in name order (cursor over name, id)."""
    page = paginate(
        contacts.prefetch_related("identities", "consents"),
        field="name",
        descending=False,
        token=request.query_params.get("cursor"),
        limit=parse_limit(request.query_params.get("limit")),
    )
    return Response(
        {
            "results": ContactOutputSerializer(page.items, many=True).data,
            "next": page_link(request, page.next),
            "previous": page_link(request, page.previous),
            **(extra or {}),
        }
    )


class ContactListApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ContactCreateInput"

        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        email = serializers.EmailField(required=False, allow_blank=True, default="")
        phone = serializers.CharField(
            max_length=40, required=False, allow_blank=True, default="", help_text="E.164, e.g. +60123456789."
        )
        whatsapp_opt_in = serializers.BooleanField(required=False, default=False)
        custom_attributes = serializers.DictField(required=False, default=dict)

    class PageSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ContactPage"

        results = ContactOutputSerializer(many=True)
        next = serializers.URLField(allow_null=True)
        previous = serializers.URLField(allow_null=True)

    @extend_schema(
        operation_id="contacts_list",
        summary="Contacts, by name",
        parameters=LIST_PARAMETERS,
        responses={200: PageSerializer, **ERRORS},
    )
    def get(self, request):
        search = request.query_params.get("search", "")
        contacts = selectors.contact_list(organization=request.organization, search=search)
        return contact_page(request, contacts)

    @extend_schema(
        operation_id="contacts_create",
        summary="Create a contact",
        request=InputSerializer,
        responses={201: ContactOutputSerializer, **ERRORS},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        contact = services.contact_create(organization=request.organization, by=request.user, **serializer.validated_data)
        contact = selectors.contact_get(organization=request.organization, contact_id=contact.pk)
        return Response(ContactOutputSerializer(contact).data, status=status.HTTP_201_CREATED)


class ContactDetailApi(APIView):
    class UpdateInputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ContactUpdateInput"

        name = serializers.CharField(max_length=200, required=False, allow_blank=True)
        email = serializers.EmailField(required=False, allow_blank=True)
        phone = serializers.CharField(max_length=40, required=False, allow_blank=True)
        whatsapp_opt_in = serializers.BooleanField(required=False)
        custom_attributes = serializers.DictField(required=False)

    @extend_schema(
        operation_id="contacts_retrieve", summary="One contact", responses={200: ContactOutputSerializer, **ERRORS}
    )
    def get(self, request, contact_id: int):
        contact = selectors.contact_get(organization=request.organization, contact_id=contact_id)
        return Response(ContactOutputSerializer(contact).data)

    @extend_schema(
        operation_id="contacts_update",
        summary="Update a contact",
        description="A new phone keeps the history with the contact; future sends go to the new number.",
        request=UpdateInputSerializer,
        responses={200: ContactOutputSerializer, **ERRORS},
    )
    def patch(self, request, contact_id: int):
        contact = selectors.contact_get(organization=request.organization, contact_id=contact_id)
        serializer = self.UpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.contact_update(contact=contact, by=request.user, **serializer.validated_data)
        contact = selectors.contact_get(organization=request.organization, contact_id=contact.pk)
        return Response(ContactOutputSerializer(contact).data)
