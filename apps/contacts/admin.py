from django import forms
from django.contrib import admin

from apps.contacts.models import Contact, ContactIdentity
from apps.core.phones import phone_normalize
from apps.accounts.admin import OrganizationScopedAdmin
from apps.core.errors import ServiceError


class ContactAdminForm(forms.ModelForm):
    avatar_url = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = Contact
        fields = "__all__"

    def clean_phone(self) -> str:
        try:
            return phone_normalize(self.cleaned_data["phone"])
        except ServiceError as exc:
            raise forms.ValidationError(exc.message) from None


class ContactIdentityInline(admin.TabularInline):
    model = ContactIdentity
    extra = 0
    fields = ["kind", "address", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Contact)
class ContactAdmin(OrganizationScopedAdmin):
    form = ContactAdminForm
    list_display = [
        "display_name", "organization", "phone", "email", "whatsapp_opt_in", "whatsapp_eligible", "created_at"
    ]
    list_filter = ["whatsapp_opt_in", "organization"]
    search_fields = ["name", "phone", "email", "identities__address"]
    list_select_related = ["organization"]
    inlines = [ContactIdentityInline]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["organization", "name", "email", "phone", "avatar_url", "custom_attributes"]}),
        (
            "WhatsApp consent",
            {
                "fields": [
                    "whatsapp_opt_in",
                    "whatsapp_opt_in_at",
                    "whatsapp_opt_in_source",
                    "whatsapp_unsubscribed_at",
                    "whatsapp_unsubscribed_reason",
                    "whatsapp_blocked_at",
                    "whatsapp_blocked_reason",
                ]
            },
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(boolean=True, description="Eligible for WhatsApp")
    def whatsapp_eligible(self, contact: Contact) -> bool:
        return contact.whatsapp_eligible

    def save_formset(self, request, form, formset, change):
        # An identity belongs to the contact's organization (its uniqueness is per organization).
        for identity in formset.save(commit=False):
            identity.organization_id = form.instance.organization_id
            identity.save()
        for identity in formset.deleted_objects:
            identity.delete()
