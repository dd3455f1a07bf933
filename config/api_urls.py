from django.urls import include, path

urlpatterns = [
    path("", include("apps.conversations.api_urls")),
    path("", include("apps.contacts.api_urls")),
    path("", include("apps.providers.api_urls")),
]
