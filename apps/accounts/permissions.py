from rest_framework.permissions import BasePermission


class IsOrganizationMember(BasePermission):
    message = "Choose an organization you belong to."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and getattr(request, "membership", None))


class IsOrganizationAdmin(IsOrganizationMember):
    message = "Only organization admins can do this."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.membership.is_admin
