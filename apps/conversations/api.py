"""The conversations API: list and read conversations, page through messages, send and retry.

Thin: parse → selector/service → serialize. Agents see only the channels they were given.
"""

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import selectors as account_selectors
from apps.contacts import selectors as contact_selectors
from apps.contacts.api import ContactOutputSerializer, contact_page
from apps.conversations import attachments, selectors, sending, services
from apps.conversations.models import Conversation, Message
from apps.core.errors import ServiceError
from apps.core.pagination import page_link, paginate, parse_limit
from apps.providers import selectors as channel_selectors

ERRORS = {
    400: OpenApiTypes.OBJECT,
    401: OpenApiTypes.OBJECT,
    403: OpenApiTypes.OBJECT,
    404: OpenApiTypes.OBJECT,
}
CURSOR_PARAMETERS = [
    OpenApiParameter("cursor", str, description="Opaque cursor from `next` or `previous`."),
    OpenApiParameter("limit", int, description="Rows per page, 1 to 100 (default 25)."),
]


# Output shapes shared by several operations ---------------------------------------------------


class ConversationOutputSerializer(serializers.Serializer):
    class ChannelSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConversationChannel"

        id = serializers.IntegerField()
        kind = serializers.CharField()
        name = serializers.CharField()

    class ContactSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConversationContact"

        id = serializers.IntegerField()
        name = serializers.CharField()
        phone = serializers.CharField()
        email = serializers.CharField()

    class AssigneeSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConversationAssignee"

        id = serializers.IntegerField()
        username = serializers.CharField()

    class ReplyWindowSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ReplyWindow"

        open = serializers.BooleanField()
        closes_at = serializers.DateTimeField(allow_null=True)
        warning = serializers.CharField()

    class Meta:
        ref_name = "Conversation"

    id = serializers.IntegerField()
    status = serializers.CharField()
    channel = ChannelSerializer()
    contact = ContactSerializer()
    assignee = AssigneeSerializer(allow_null=True)
    last_message_at = serializers.DateTimeField(allow_null=True)
    last_message_preview = serializers.CharField()
    subject = serializers.CharField(help_text="Email: the thread's subject; empty for chat channels.")
    last_inbound_at = serializers.DateTimeField(allow_null=True)
    has_unread = serializers.BooleanField()
    reply_window = serializers.SerializerMethodField()

    @extend_schema_field(ReplyWindowSerializer)
    def get_reply_window(self, conversation) -> dict:
        state = sending.policy_of(conversation.channel).window(conversation.last_inbound_at)
        return {"open": state.open, "closes_at": state.closes_at, "warning": state.warning}


class AttachmentOutputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "MessageAttachment"

    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    content_type = serializers.CharField()
    filename = serializers.CharField()
    size = serializers.IntegerField()

    def get_url(self, attachment) -> str:
        url = attachments.attachment_url(attachment)
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url


class MessageOutputSerializer(serializers.Serializer):
    class SenderSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MessageSender"

        kind = serializers.CharField()
        name = serializers.CharField()

    class Meta:
        ref_name = "Message"

    id = serializers.IntegerField()
    conversation_id = serializers.IntegerField()
    direction = serializers.CharField()
    type = serializers.CharField()
    text = serializers.CharField()
    status = serializers.CharField()
    error_code = serializers.CharField()
    error_reason = serializers.CharField()
    external_id = serializers.CharField(allow_null=True)
    client_token = serializers.CharField(allow_null=True)
    sender = serializers.SerializerMethodField()
    attachments = AttachmentOutputSerializer(many=True)
    location = serializers.JSONField(allow_null=True)
    email = serializers.SerializerMethodField()
    buttons = serializers.SerializerMethodField()
    edited_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_email(self, message) -> dict | None:
        """Email: subject, from (name and real address), to, cc, Message-ID, whether a machine sent
        it, and the full text with its quoted history. The HTML is served sanitized by the inbox."""
        details = message.details
        if not details:
            return None
        keys = ("subject", "from", "to", "cc", "message_id", "automated", "spoofed_name", "full_text")
        return {key: details[key] for key in keys if key in details}

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_buttons(self, message) -> list[str]:
        return [str(button.get("text") or "") for button in message.buttons or [] if isinstance(button, dict)]

    @extend_schema_field(SenderSerializer)
    def get_sender(self, message) -> dict:
        if message.sender_kind == Message.SenderKind.CONTACT:
            name = message.conversation.contact.display_name
        elif message.sender_kind == Message.SenderKind.BOT:
            name = "Bot"
        elif message.sender is not None:
            name = message.sender.get_full_name() or message.sender.get_username()
        else:
            name = "Agent"
        return {"kind": message.sender_kind, "name": name}


class SendInputSerializer(serializers.Serializer):
    """What an agent sends: text and/or uploaded attachments, or an approved template."""

    class Meta:
        ref_name = "SendMessageInput"

    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, default="")
    attachment_ids = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    client_token = serializers.CharField(required=False, allow_null=True, max_length=100, default=None)
    template_id = serializers.IntegerField(required=False, allow_null=True, default=None)
    template_variables = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, allow_null=True, default=None
    )
    subject = serializers.CharField(required=False, allow_blank=True, default="", max_length=1000,
                                    help_text="Email: the subject of a new email (a reply keeps the conversation's).")
    buttons = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=200), required=False, default=list, max_length=50,
        help_text="Reply buttons' labels under the message, on channels whose policy allows them (Telegram); "
        "a tap comes back as the contact's reply.",
    )


def send_arguments(data: dict) -> dict:
    return {
        "subject": data["subject"],
        "text": data["text"],
        "attachment_ids": tuple(data["attachment_ids"]),
        "client_token": data["client_token"] or None,
        "template_id": data["template_id"],
        "template_variables": data["template_variables"],
        "buttons": tuple(data["buttons"]),
    }


def message_response(request, message: Message, http_status: int) -> Response:
    # The message leaves this request PENDING; its delivery runs after commit.
    message = selectors.message_list(conversation=message.conversation).select_related("conversation__contact").get(
        pk=message.pk
    )
    return Response(MessageOutputSerializer(message, context={"request": request}).data, status=http_status)


def page_response(request, page, serializer_class) -> Response:
    return Response(
        {
            "results": serializer_class(page.items, many=True, context={"request": request}).data,
            "next": page_link(request, page.next),
            "previous": page_link(request, page.previous),
        }
    )


# Conversations -------------------------------------------------------------------------------


class ConversationListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConversationFilter"

        status = serializers.ChoiceField(choices=Conversation.Status.choices, required=False)
        channel = serializers.IntegerField(required=False)
        assignee = serializers.RegexField(r"^(me|unassigned|\d+)$", required=False)

    class PageSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConversationPage"

        results = ConversationOutputSerializer(many=True)
        next = serializers.URLField(allow_null=True)
        previous = serializers.URLField(allow_null=True)

    @extend_schema(
        operation_id="conversations_list",
        summary="Conversations, newest activity first",
        parameters=[
            OpenApiParameter("status", str, enum=Conversation.Status.values),
            OpenApiParameter("channel", int, description="A channel id."),
            OpenApiParameter("assignee", str, description="`me`, `unassigned` or a user id."),
            *CURSOR_PARAMETERS,
        ],
        responses={200: PageSerializer, **ERRORS},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        conversations = selectors.conversation_list(
            membership=request.membership,
            status=filters.validated_data.get("status", ""),
            channel_id=filters.validated_data.get("channel"),
            assignee=filters.validated_data.get("assignee", ""),
        )
        page = paginate(
            conversations,
            field="last_message_at",
            descending=True,
            token=request.query_params.get("cursor"),
            limit=parse_limit(request.query_params.get("limit")),
        )
        return page_response(request, page, ConversationOutputSerializer)


class ConversationDetailApi(APIView):
    class UpdateInputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ConversationUpdateInput"

        status = serializers.ChoiceField(choices=Conversation.Status.choices, required=False)
        assignee = serializers.IntegerField(required=False, allow_null=True, help_text="A user id, or null.")

    @extend_schema(
        operation_id="conversations_retrieve",
        summary="One conversation",
        responses={200: ConversationOutputSerializer, **ERRORS},
    )
    def get(self, request, conversation_id: int):
        conversation = selectors.conversation_get(membership=request.membership, conversation_id=conversation_id)
        return Response(ConversationOutputSerializer(conversation).data)

    @extend_schema(
        operation_id="conversations_update",
        summary="Change a conversation's status and/or assignee",
        request=UpdateInputSerializer,
        responses={200: ConversationOutputSerializer, **ERRORS},
    )
    def patch(self, request, conversation_id: int):
        conversation = selectors.conversation_get(membership=request.membership, conversation_id=conversation_id)
        serializer = self.UpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with transaction.atomic():
            if "assignee" in data:
                assignee = None
                if data["assignee"] is not None:
                    member = (
                        account_selectors.member_list(organization=request.organization)
                        .filter(user_id=data["assignee"])
                        .first()
                    )
                    if member is None:
                        raise ServiceError(
                            "assignee_not_member", "That person is not a member of this organization.", status=404
                        )
                    assignee = member.user
                services.conversation_assign(
                    conversation=conversation, assignee=assignee, membership=request.membership
                )
            if "status" in data:
                services.conversation_set_status(conversation=conversation, status=data["status"])
        conversation = selectors.conversation_get(membership=request.membership, conversation_id=conversation.pk)
        return Response(ConversationOutputSerializer(conversation).data)


# Messages ------------------------------------------------------------------------------------


class ConversationMessagesApi(APIView):
    class PageSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MessagePage"

        results = MessageOutputSerializer(many=True)
        next = serializers.URLField(allow_null=True)
        previous = serializers.URLField(allow_null=True)

    @extend_schema(
        operation_id="conversations_messages_list",
        summary="A conversation's messages, oldest first; the first page holds the newest",
        description="Without a cursor: the newest `limit` messages. `previous` loads older ones, `next` newer.",
        parameters=CURSOR_PARAMETERS,
        responses={200: PageSerializer, **ERRORS},
    )
    def get(self, request, conversation_id: int):
        conversation = selectors.conversation_get(membership=request.membership, conversation_id=conversation_id)
        page = paginate(
            selectors.message_list(conversation=conversation),
            field="created_at",
            descending=False,
            token=request.query_params.get("cursor"),
            limit=parse_limit(request.query_params.get("limit")),
            start_at_end=True,
        )
        for message in page.items:
            # One conversation: its contact names every inbound message without a query each.
            message.conversation = conversation
        return page_response(request, page, MessageOutputSerializer)

    @extend_schema(
        operation_id="conversations_messages_create",
        summary="Send a message in this conversation",
        description="Answers 202 with the message as `pending`; delivery runs in the background.",
        request=SendInputSerializer,
        responses={202: MessageOutputSerializer, **ERRORS},
    )
    def post(self, request, conversation_id: int):
        conversation = selectors.conversation_get(membership=request.membership, conversation_id=conversation_id)
        serializer = SendInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = sending.message_send(
            membership=request.membership, conversation=conversation, **send_arguments(serializer.validated_data)
        )
        return message_response(request, message, status.HTTP_202_ACCEPTED)


class ContactMessageSendApi(APIView):
    """"Select a contact and send": starts the conversation on the channel, or continues it."""

    class InputSerializer(SendInputSerializer):
        class Meta:
            ref_name = "ContactSendMessageInput"

        channel_id = serializers.IntegerField()

    @extend_schema(
        operation_id="contacts_messages_create",
        summary="Send a message to a contact on a channel",
        request=InputSerializer,
        responses={202: MessageOutputSerializer, **ERRORS},
    )
    def post(self, request, contact_id: int):
        contact = contact_selectors.contact_get(organization=request.organization, contact_id=contact_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel = channel_selectors.channel_get(
            membership=request.membership, channel_id=serializer.validated_data["channel_id"]
        )
        message = sending.message_send(
            membership=request.membership,
            channel=channel,
            contact_id=contact.pk,
            **send_arguments(serializer.validated_data),
        )
        return message_response(request, message, status.HTTP_202_ACCEPTED)


class MessageRetryApi(APIView):
    @extend_schema(
        operation_id="messages_retry",
        summary="Send a failed message again",
        request=None,
        responses={202: MessageOutputSerializer, **ERRORS},
    )
    def post(self, request, message_id: int):
        message = sending.message_retry(membership=request.membership, message_id=message_id)
        return message_response(request, message, status.HTTP_202_ACCEPTED)


class AttachmentUploadApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AttachmentUploadInput"

        file = serializers.FileField()
        channel_id = serializers.IntegerField()

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "UploadedAttachment"

        id = serializers.IntegerField()
        filename = serializers.CharField()
        size = serializers.IntegerField()
        content_type = serializers.CharField()

    @extend_schema(
        operation_id="attachments_create",
        summary="Upload a file to attach to a message on a channel",
        description="Checked against the channel's media rules (types and sizes).",
        request={"multipart/form-data": InputSerializer},
        responses={201: OutputSerializer, **ERRORS},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel = channel_selectors.channel_get(
            membership=request.membership, channel_id=serializer.validated_data["channel_id"]
        )
        attachment = attachments.attachment_upload(
            membership=request.membership,
            uploaded_file=serializer.validated_data["file"],
            policy=sending.policy_of(channel),
        )
        return Response(self.OutputSerializer(attachment).data, status=status.HTTP_201_CREATED)


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
            *CURSOR_PARAMETERS,
        ],
        responses={200: PageSerializer, **ERRORS},
    )
    def get(self, request, channel_id: int):
        channel = channel_selectors.channel_get(membership=request.membership, channel_id=channel_id)
        policy = sending.policy_of(channel)
        contacts = contact_selectors.contact_eligible_list(
            organization=request.organization, policy=policy, search=request.query_params.get("search", "")
        )
        response = contact_page(request, contacts)
        response.data["empty_message"] = "" if response.data["results"] else eligible_empty_message(policy)
        return response


def eligible_empty_message(policy) -> str:
    if policy.needs_opt_in:
        return f"No contacts with {policy.label} opt-in found."
    if policy.needs_phone:
        return f"No contacts with a phone number found for {policy.label}."
    return f"No contacts found for {policy.label}."
