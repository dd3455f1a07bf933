from django import forms
from django.contrib import admin

from apps.contacts.models import Contact, ContactConsent, ContactIdentity, consent_eligible
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


class ContactConsentInline(admin.TabularInline):
    """Consent per kind of channel ("whatsapp" is the WhatsApp consent: whatsapp_opt_in in the API)."""

    model = ContactConsent
    extra = 0
    fields = ["kind", "opted_in", "opted_in_at", "opt_in_source", "opted_out_at", "opt_out_reason", "blocked_at",
              "blocked_reason", "changed_by", "updated_at"]
    readonly_fields = ["changed_by", "updated_at"]


class WhatsAppConsentFilter(admin.SimpleListFilter):
    title = "WhatsApp consent"
    parameter_name = "whatsapp"

    def lookups(self, request, model_admin):
        return [("eligible", "Eligible"), ("not", "Not eligible")]

    def queryset(self, request, queryset):
        eligible = consent_eligible(ContactIdentity.Kind.WHATSAPP)
        if self.value() == "eligible":
            return queryset.filter(eligible).exclude(phone="")
        if self.value() == "not":
            return queryset.exclude(eligible) | queryset.filter(phone="")
        return queryset


@admin.register(Contact)
class ContactAdmin(OrganizationScopedAdmin):
    form = ContactAdminForm
    list_display = ["display_name", "organization", "phone", "email", "whatsapp_opt_in", "whatsapp_eligible", "created_at"]
    list_filter = [WhatsAppConsentFilter, "organization"]
    search_fields = ["name", "phone", "email", "identities__address"]
    list_select_related = ["organization"]
    inlines = [ContactIdentityInline, ContactConsentInline]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["organization", "name", "email", "phone", "avatar_url", "custom_attributes"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("consents")

    @admin.display(boolean=True, description="WhatsApp opt-in")
    def whatsapp_opt_in(self, contact: Contact) -> bool:
        return contact.whatsapp_consent.opted_in

    @admin.display(boolean=True, description="Eligible for WhatsApp")
    def whatsapp_eligible(self, contact: Contact) -> bool:
        return contact.whatsapp_eligible

    def save_formset(self, request, form, formset, change):
        # Identities and consents belong to the contact's organization (uniqueness is per
        # organization); a consent changed here was changed by this admin.
        for row in formset.save(commit=False):
            row.organization_id = form.instance.organization_id
            if isinstance(row, ContactConsent):
                row.changed_by = request.user
            row.save()
        for row in formset.deleted_objects:
            row.delete()
