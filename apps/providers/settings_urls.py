from django.urls import path

from apps.providers import settings_views as views

app_name = "settings"

urlpatterns = [
    path("integrations/", views.integrations, name="integrations"),
    path("integrations/meta/connect/", views.meta_connect_start, name="meta-connect"),
    path("integrations/meta/callback/", views.meta_callback, name="meta-callback"),
    path("integrations/meta/pages/<uuid:pending_uuid>/", views.meta_pages, name="meta-pages"),
    path("integrations/channels/<int:channel_id>/disconnect/", views.meta_disconnect, name="meta-disconnect"),
    path("integrations/whatsapp-cloud/", views.whatsapp_cloud_connect, name="whatsapp-cloud"),
]
