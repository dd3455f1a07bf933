from django.urls import path

from apps.contacts import api

urlpatterns = [
    path("contacts/", api.ContactListApi.as_view(), name="api-contact-list"),
    path("contacts/<int:contact_id>/", api.ContactDetailApi.as_view(), name="api-contact-detail"),
]
