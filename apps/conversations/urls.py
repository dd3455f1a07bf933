"""File URLs, mounted at /files/: signed public links for providers, session links for agents."""

from django.urls import path

from apps.conversations import views

app_name = "files"

urlpatterns = [
    path("public/<str:token>/<str:filename>", views.attachment_public, name="public"),
    path("attachments/<int:attachment_id>/<str:filename>", views.attachment_download, name="attachment"),
]
