from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("webhooks/", include("apps.providers.urls")),
    path("files/", include("apps.conversations.urls")),
    path("settings/", include("apps.providers.settings_urls")),
    path("", include("apps.accounts.urls")),
    path("", include("apps.inbox.urls")),
]
