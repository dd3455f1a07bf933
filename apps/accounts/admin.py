"""Admin for organizations, memberships, teams and API tokens, and what every tenant-data admin
shares: staff who are not superusers see and edit only the organizations where they are an
owner or admin (`OrganizationScopedAdmin`)."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from apps.accounts import services
from apps.accounts.models import ApiToken, Membership, Organization, Team


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


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    organization_field = "pk"
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__username", "user__email", "organization__name"]
    list_select_related = ["user", "organization"]
    raw_id_fields = ["user"]


@admin.register(Team)
class TeamAdmin(OrganizationScopedAdmin):
    list_display = ["name", "organization", "created_at"]
    search_fields = ["name", "organization__name"]
    list_select_related = ["organization"]
    fields = ["organization", "name"]

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            return
        # A team is backed by an auth Group (channel access goes through it): the service makes both.
        team = services.team_create(organization=obj.organization, name=obj.name)
        obj.pk, obj.group, obj.created_at = team.pk, team.group, team.created_at
        obj._state.adding = False


@admin.register(ApiToken)
class ApiTokenAdmin(OrganizationScopedAdmin):
    organization_field = "membership__organization"
    list_display = ["name", "prefix", "membership", "created_at", "last_used_at"]
    search_fields = ["name", "prefix", "membership__user__username", "membership__organization__name"]
    list_select_related = ["membership__user", "membership__organization"]
    raw_id_fields = ["membership"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["membership", "name"]
        return ["membership", "name", "prefix", "created_at", "last_used_at"]

    def get_readonly_fields(self, request, obj=None):
        # Only the hash is stored; the key itself is shown once, when it is created.
        return [] if obj is None else ["membership", "prefix", "created_at", "last_used_at"]

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            return
        token, key = services.api_token_create(membership=obj.membership, name=obj.name)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = token.pk, token.prefix, token.key_hash, token.created_at
        obj._state.adding = False
        self.message_user(
            request,
            f"The key for “{token.name}” is {key} — copy it now: it is shown only once.",
            messages.WARNING,
        )


class SuperuserOnly:
    """Users and groups span organizations (a user may belong to several; a team's group is an
    implementation detail): only the installation's superusers manage them here. Organization
    staff manage their people through Membership and Team, which are scoped."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


class ParleyUserAdmin(SuperuserOnly, UserAdmin):
    pass


class ParleyGroupAdmin(SuperuserOnly, GroupAdmin):
    pass


for model, model_admin in ((get_user_model(), ParleyUserAdmin), (Group, ParleyGroupAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
