from django.urls import path

from apps.providers import api

urlpatterns = [
    path("channels/", api.ChannelListApi.as_view(), name="api-channel-list"),
    path("channels/<int:channel_id>/", api.ChannelDetailApi.as_view(), name="api-channel-detail"),
]
