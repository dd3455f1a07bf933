from django.urls import path

from apps.inbox import views

app_name = "inbox"

urlpatterns = [
    path("", views.index, name="index"),
    path("conversations/<int:conversation_id>/", views.index, name="conversation"),
    path("conversations/<int:conversation_id>/messages/", views.message_older, name="messages"),
    path("conversations/<int:conversation_id>/send/", views.conversation_send, name="send"),
    path("conversations/<int:conversation_id>/typing/", views.conversation_typing, name="typing"),
    path("conversations/<int:conversation_id>/assign/", views.conversation_assign, name="assign"),
    path("conversations/<int:conversation_id>/status/", views.conversation_status, name="status"),
    path("messages/<int:message_id>/retry/", views.message_retry, name="retry"),
    path("messages/<int:message_id>/email/", views.message_email, name="message-email"),
    path("attachments/", views.attachment_create, name="attachment-create"),
    path("contacts/<int:contact_id>/", views.contact_detail, name="contact"),
    path("new/", views.new_message, name="new"),
    path("new/<int:channel_id>/", views.new_split, name="new-split"),
    path("new/<int:channel_id>/send/", views.new_send, name="new-send"),
]
