from django.urls import path

from apps.providers import meta_webhook, views

app_name = "webhooks"

urlpatterns = [
    path("twilio/<uuid:channel_uuid>/", views.twilio_message, name="twilio-message"),
    path("twilio/<uuid:channel_uuid>/status/", views.twilio_status, name="twilio-status"),
    path("sandbox/<uuid:channel_uuid>/", views.sandbox_webhook, name="sandbox"),
    path("meta/", meta_webhook.meta_webhook, name="meta"),
]
