from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

from apps.accounts.models import Membership
from apps.core.errors import NotFound
from apps.providers.models import Channel

VIEW_CHANNEL = "providers.view_channel"


def channel_list_visible(*, membership: Membership) -> QuerySet[Channel]:
    """Owners and admins see every channel of the organization; agents the ones they were given
    (directly or through a team), as django-guardian object permissions."""
    channels = Channel.objects.filter(organization_id=membership.organization_id)
    if membership.is_admin:
        return channels
    return get_objects_for_user(
        membership.user, VIEW_CHANNEL, klass=channels, accept_global_perms=False, with_superuser=False
    )


def channel_ids_visible(*, membership: Membership) -> set[int]:
    return set(channel_list_visible(membership=membership).values_list("pk", flat=True))


def channel_get(*, membership: Membership, channel_id: int) -> Channel:
    channel = channel_list_visible(membership=membership).filter(pk=channel_id).first()
    if channel is None:
        raise NotFound("Channel not found.")
    return channel


def channel_get_by_uuid(*, uuid: str) -> Channel | None:
    """For webhooks only: the provider names the channel by its public uuid."""
    return Channel.objects.select_related("organization").filter(uuid=uuid).first()
