"""What every tenant-data admin shares: staff who are not superusers see and edit only the
organizations where they are an owner or admin."""

from django.contrib import admin

from apps.accounts.models import Membership, Organization


def admin_organization_ids(user) -> list[int]:
    return list(
        Membership.objects.filter(
            user=user, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN]
        ).values_list("organization_id", flat=True)
    )


class OrganizationScopedAdmin(admin.ModelAdmin):
    # The path from the model to its organization, for the queryset filter.
    organization_field = "organization"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.organization_field}__in": admin_organization_ids(request.user)})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # Choices (and what a typed raw id may name) stay inside the user's organizations.
        related = db_field.related_model
        if not request.user.is_superuser:
            ids = admin_organization_ids(request.user)
            if related is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk__in=ids)
            elif any(field.name == "organization" for field in related._meta.get_fields()):
                kwargs["queryset"] = related._default_manager.filter(organization_id__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
