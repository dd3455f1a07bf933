from django.urls import path

from apps.conversations import api

urlpatterns = [
    path("conversations/", api.ConversationListApi.as_view(), name="api-conversation-list"),
    path("conversations/<int:conversation_id>/", api.ConversationDetailApi.as_view(), name="api-conversation-detail"),
    path(
        "conversations/<int:conversation_id>/messages/",
        api.ConversationMessagesApi.as_view(),
        name="api-conversation-messages",
    ),
    path("contacts/<int:contact_id>/messages/", api.ContactMessageSendApi.as_view(), name="api-contact-messages"),
    path("messages/<int:message_id>/retry/", api.MessageRetryApi.as_view(), name="api-message-retry"),
    path("attachments/", api.AttachmentUploadApi.as_view(), name="api-attachment-upload"),
    path(
        "channels/<int:channel_id>/eligible-contacts/",
        api.ChannelEligibleContactsApi.as_view(),
        name="api-channel-eligible-contacts",
    ),
]
