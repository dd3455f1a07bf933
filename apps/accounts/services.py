from django.contrib.auth.models import Group
from django.db import transaction
from django.utils.text import slugify

from apps.accounts.models import ApiToken, Membership, Organization, Team
from apps.core.errors import NotFound


@transaction.atomic
def organization_create(*, name: str, owner) -> Organization:
    base = slugify(name)[:60] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    organization = Organization.objects.create(name=name, slug=slug)
    Membership.objects.create(user=owner, organization=organization, role=Membership.Role.OWNER)
    return organization


def membership_add(*, organization: Organization, user, role: str = Membership.Role.AGENT) -> Membership:
    membership, _ = Membership.objects.get_or_create(organization=organization, user=user, defaults={"role": role})
    return membership


@transaction.atomic
def team_create(*, organization: Organization, name: str) -> Team:
    group = Group.objects.create(name=f"org-{organization.pk}-team-{slugify(name)[:40]}-{Group.objects.count() + 1}")
    return Team.objects.create(organization=organization, name=name, group=group)


def team_add_member(*, team: Team, membership: Membership) -> None:
    if membership.organization_id != team.organization_id:
        raise NotFound("Member not found.")
    membership.user.groups.add(team.group)


def api_token_create(*, membership: Membership, name: str) -> tuple[ApiToken, str]:
    """Returns the token row and the key, which is shown once and never stored."""
    key = ApiToken.generate_key()
    token = ApiToken.objects.create(membership=membership, name=name, prefix=key[:10], key_hash=ApiToken.hash_key(key))
    return token, key
