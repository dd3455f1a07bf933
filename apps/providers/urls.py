from django.urls import path

from apps.providers import catalog, webhooks

app_name = "webhooks"

urlpatterns = [
    # App-level webhooks a kind declares (Meta's one webhook for every page and number).
    *catalog.webhook_urls(),
    # Every other webhook names its channel; the channel's kind says which hooks it has.
    path("<slug:hook>/<uuid:channel_uuid>/", webhooks.channel_webhook, name="channel"),
    path("<slug:hook>/<uuid:channel_uuid>/<slug:sub>/", webhooks.channel_webhook, name="channel-sub"),
]
