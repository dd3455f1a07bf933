"""Writes and checks on channels: readiness to send, error marking, Twilio configuration.

Secrets are write-only: nothing here returns, logs or renders them.
"""

import logging

from django.db import transaction

from apps.providers import registry
from apps.providers.models import Channel
from apps.providers.policies import POLICIES

log = logging.getLogger(__name__)


def channel_label(channel: Channel) -> str:
    """What agents call the channel in sentences ("WhatsApp", "SMS")."""
    policy = POLICIES.get(channel.kind)
    return policy.label if policy else channel.get_kind_display()


def not_configured_sentence(channel: Channel) -> str:
    return f"{channel_label(channel)} is not configured for this organization."


def channel_missing_configuration(channel: Channel) -> list[str]:
    try:
        return list(registry.adapter_for(channel).missing_configuration())
    except LookupError:
        return ["adapter"]


def channel_readiness(channel: Channel) -> tuple[bool, str]:
    """(ready to send?, the sentence an agent reads when not)."""
    if channel.status == Channel.Status.DISABLED or channel_missing_configuration(channel):
        return False, not_configured_sentence(channel)
    if channel.status == Channel.Status.ERROR:
        return False, channel.status_reason or not_configured_sentence(channel)
    return True, ""


def channel_mark_error(*, channel: Channel, reason: str) -> None:
    """The provider refused our credentials or sender: stop sending until an admin fixes it."""
    reason = reason[:300]
    Channel.objects.filter(pk=channel.pk).update(status=Channel.Status.ERROR, status_reason=reason)
    channel.status = Channel.Status.ERROR
    channel.status_reason = reason
    log.warning("channel %s marked in error: %s", channel.pk, reason)


@transaction.atomic
def channel_configure_twilio(
    *, channel: Channel, account_sid: str, sender: str, auth_token: str | None = None, enabled: bool = True
) -> Channel:
    """Store the organization's Twilio account. `auth_token=None` keeps the stored token (forms
    never show it back). New credentials clear an error status: the admin fixed something."""
    channel = Channel.objects.select_for_update().get(pk=channel.pk)
    account_sid = (account_sid or "").strip()
    sender = (sender or "").strip()
    changed = account_sid != channel.config.get("account_sid", "") or sender != channel.config.get("sender", "")
    config = {**channel.config, "account_sid": account_sid, "sender": sender}
    secrets = dict(channel.secrets)
    if auth_token is not None and auth_token.strip():
        token = auth_token.strip()
        changed = changed or token != secrets.get("auth_token", "")
        secrets["auth_token"] = token
    channel.config = config
    channel.secrets = secrets
    if not enabled:
        channel.status, channel.status_reason = Channel.Status.DISABLED, ""
    elif channel.status != Channel.Status.ERROR or changed:
        channel.status, channel.status_reason = Channel.Status.ACTIVE, ""
    channel.save(update_fields=["config", "secrets", "status", "status_reason", "updated_at"])
    return channel


@transaction.atomic
def channel_create_twilio(
    *, organization, name: str, account_sid: str, sender: str, auth_token: str, enabled: bool = True
) -> Channel:
    """A new Twilio WhatsApp channel for the organization, configured in the same transaction."""
    channel = Channel.objects.create(
        organization=organization, kind=Channel.Kind.TWILIO_WHATSAPP, name=name.strip(), status=Channel.Status.DISABLED
    )
    return channel_configure_twilio(
        channel=channel, account_sid=account_sid, sender=sender, auth_token=auth_token, enabled=enabled
    )
