from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from apps.accounts.models import ApiToken, Membership, Organization


def membership_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("organization").order_by("organization__name")


def membership_get(*, user: AbstractBaseUser, organization_id: int) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.select_related("organization").filter(user=user, organization_id=organization_id).first()


def membership_default(*, user: AbstractBaseUser) -> Membership | None:
    return membership_list_for_user(user=user).first()


def member_list(*, organization: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(organization=organization).select_related("user").order_by("user__username")


def api_token_membership(*, key: str) -> Membership | None:
    token = (
        ApiToken.objects.select_related("membership__organization", "membership__user")
        .filter(key_hash=ApiToken.hash_key(key))
        .first()
    )
    return token.membership if token else None
