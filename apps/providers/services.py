"""Writes and checks on channels: readiness to send, what a refused credential means,
configuring a channel from its kind's credentials, and behaviour switches.

Secrets are write-only: nothing here returns, logs or renders them.
"""

import logging
from collections.abc import Mapping

from django.conf import settings
from django.db import transaction

from apps.core.errors import ServiceError
from apps.providers import catalog
from apps.providers.kinds.base import CONFIGURATION, SendError
from apps.providers.models import Channel

log = logging.getLogger(__name__)

# Behaviour switches a channel may carry in `settings`, and their defaults.
SETTING_DEFAULTS = {"send_read_receipts": True, "send_typing_indicators": True}


class CredentialsInvalid(ServiceError):
    """Submitted credentials that do not pass the kind's rules; `fields` names each problem."""

    def __init__(self, fields: dict[str, str]):
        name, sentence = next(iter(fields.items()))
        super().__init__("invalid", f"{name}: {sentence}")
        self.fields = fields


def channel_label(channel: Channel) -> str:
    """What agents call the channel in sentences ("WhatsApp", "SMS")."""
    kind = catalog.kind_of(channel.kind)
    return kind.policy.label if kind else channel.kind


def not_configured_sentence(channel: Channel) -> str:
    return f"{channel_label(channel)} is not configured for this organization."


def channel_missing_configuration(channel: Channel) -> list[str]:
    try:
        return list(catalog.adapter_for(channel).missing_configuration())
    except LookupError:
        return ["adapter"]


def channel_readiness(channel: Channel) -> tuple[bool, str]:
    """(ready to send?, the sentence an agent reads when not)."""
    if channel.status == Channel.Status.DISABLED or channel_missing_configuration(channel):
        return False, not_configured_sentence(channel)
    if channel.status == Channel.Status.ERROR:
        return False, channel.status_reason or not_configured_sentence(channel)
    return True, ""


def channel_setting(channel: Channel, name: str) -> bool:
    return bool((channel.settings or {}).get(name, SETTING_DEFAULTS.get(name, False)))


def channel_mark_error(*, channel: Channel, reason: str) -> None:
    """Stop sending on this channel until an admin fixes it."""
    reason = reason[:300]
    Channel.objects.filter(pk=channel.pk).update(status=Channel.Status.ERROR, status_reason=reason)
    channel.status = Channel.Status.ERROR
    channel.status_reason = reason
    log.warning("channel %s marked in error: %s", channel.pk, reason)


def channel_credentials_refused(*, channel: Channel, reason: str) -> None:
    """The provider refused the channel's credentials (a bad token, a wrong sender): the channel
    goes to error, and so does every channel of the organization that shares those credentials
    (Messenger and Instagram on one page token). Each says the kind's reconnect sentence (what
    an admin must do), or else the refusal's own words."""
    kind = catalog.kind_of(channel.kind)
    channel_mark_error(channel=channel, reason=(kind.reconnect_reason if kind else "") or reason)
    shared = kind.shared_credential if kind else ""
    value = (channel.config or {}).get(shared) if shared else None
    if not value:
        return
    kinds = [other.key for other in catalog.KINDS.values() if other.shared_credential == shared]
    siblings = (
        Channel.objects.filter(organization_id=channel.organization_id, kind__in=kinds, **{f"config__{shared}": value})
        .exclude(pk=channel.pk)
        .exclude(status=Channel.Status.DISABLED)
    )
    for sibling in siblings:
        sibling_kind = catalog.kind_of(sibling.kind)
        channel_mark_error(channel=sibling, reason=(sibling_kind.reconnect_reason if sibling_kind else "") or reason)


def channel_refused(*, channel: Channel, error: SendError) -> bool:
    """Any call to a provider that failed (a send, a receipt, a profile lookup): when the kind's
    classifier says the credentials are at fault, the channel and those sharing them go to
    error. Returns whether they did."""
    if error.effect != CONFIGURATION:
        return False
    channel_credentials_refused(channel=channel, reason=error.reason)
    return True


# Configuring -----------------------------------------------------------------------------------


def credentials_clean(kind_key: str, values: Mapping[str, str], *, config: Mapping, secrets: Mapping,
                      creating: bool = False) -> tuple[dict, dict]:
    """The kind's credentials from submitted `values` over what is stored: (config, secrets).
    The one place their rules run (admin, settings pages and the API all come here).

    A secret left empty or not submitted keeps the stored one (forms never show it back); a
    setting not submitted keeps its value, one submitted empty clears it. Required fields are
    required when `creating` (a channel whose settings were cleared later is simply not ready).
    Raises CredentialsInvalid naming every field that does not pass."""
    kind = catalog.KINDS[kind_key]
    config, secrets = dict(config), dict(secrets)
    errors = {}
    for field in kind.credentials:
        store = secrets if field.secret else config
        submitted = field.name in values
        value = str(values.get(field.name) or "").strip() if submitted else ""
        if value and field.clean is not None:
            try:
                value = field.clean(value, values)
            except ValueError as exc:
                errors[field.name] = str(exc)
                continue
        if len(value) > field.max_length:
            errors[field.name] = f"At most {field.max_length} characters."
        elif value:
            store[field.name] = value
        elif submitted and not field.secret:
            store.pop(field.name, None)
        if not store.get(field.name) and field.name not in errors:
            if field.generate is not None:
                store[field.name] = field.generate()
            elif field.required and creating:
                errors[field.name] = "This field is required."
    if errors:
        raise CredentialsInvalid(errors)
    return config, secrets


def channel_configure(*, channel: Channel, values: Mapping[str, str], enabled: bool = True,
                      name: str | None = None) -> Channel:
    """Store a channel's credentials (its kind's fields), and switch it on or off. Secrets left
    empty keep the stored ones (forms never show them back). New credentials clear an error
    status: the admin fixed something. A kind that tells its provider where to call us
    (`adapter.connect`) does so first, when credentials are submitted or the channel is in
    error; a refusal raises ServiceError and stores nothing."""
    stored = Channel.objects.get(pk=channel.pk)
    config, secrets = credentials_clean(stored.kind, values, config=stored.config or {}, secrets=stored.secrets or {})
    connected = None
    if enabled and _reconnect_wanted(stored, values, config=config, secrets=secrets):
        connected = _connect(stored, config=config, secrets=secrets, previous=stored)
    return _channel_configure_store(channel=channel, values=values, enabled=enabled, name=name, connected=connected)


@transaction.atomic
def _channel_configure_store(*, channel: Channel, values: Mapping[str, str], enabled: bool, name: str | None,
                             connected: Mapping[str, str] | None) -> Channel:
    channel = Channel.objects.select_for_update().get(pk=channel.pk)
    kind = catalog.KINDS[channel.kind]
    config, secrets = credentials_clean(channel.kind, values, config=channel.config or {}, secrets=channel.secrets or {})
    config.update(connected or {})
    # Connected again just now (`connected` is not None): the provider took the credentials.
    changed = connected is not None or config != (channel.config or {}) or secrets != (channel.secrets or {})
    channel.config, channel.secrets = config, secrets
    if kind.address_from:
        channel.address = str(config.get(kind.address_from) or "")
    if name is not None and name.strip():
        channel.name = name.strip()[:100]
    if not enabled:
        channel.status, channel.status_reason = Channel.Status.DISABLED, ""
    elif channel.status != Channel.Status.ERROR or changed:
        channel.status, channel.status_reason = Channel.Status.ACTIVE, ""
    channel.save()
    return channel


def channel_create(*, organization, kind: str, name: str, values: Mapping[str, str], enabled: bool = True) -> Channel:
    """A new channel of the organization. A kind that tells its provider where to call us
    (`adapter.connect`: Telegram's setWebhook) does so before the channel is stored; a refusal
    raises ServiceError and stores nothing."""
    if kind not in catalog.KINDS:
        raise ServiceError("invalid_kind", "Choose a kind of channel Parley supports.")
    config, secrets = credentials_clean(kind, values, config={}, secrets={}, creating=True)
    channel = Channel(organization=organization, kind=kind, name=(name or "").strip()[:100] or catalog.KINDS[kind].label,
                      config=config, secrets=secrets,
                      status=Channel.Status.ACTIVE if enabled else Channel.Status.DISABLED)
    if enabled:
        channel.config = {**config, **(_connect(channel, config=config, secrets=secrets) or {})}
    if catalog.KINDS[kind].address_from:
        channel.address = str(channel.config.get(catalog.KINDS[kind].address_from) or "")
    channel.save()
    return channel


# Collecting ------------------------------------------------------------------------------------


def channels_to_poll() -> list[int]:
    """Active channels whose kind collects from the provider (an IMAP mailbox)."""
    kinds = [kind.key for kind in catalog.KINDS.values() if kind.poll is not None and kind.adapter is not None]
    return list(Channel.objects.filter(kind__in=kinds, status=Channel.Status.ACTIVE).values_list("pk", flat=True))


def channel_poll(*, channel_id: int) -> int:
    """Collect what the provider keeps for one channel, through its kind's `poll`. Returns the
    number of new events. A refused login puts the channel in error (the kind's sentence); a
    provider out of reach is logged and tried at the next beat."""
    channel = Channel.objects.select_related("organization").filter(pk=channel_id, status=Channel.Status.ACTIVE).first()
    kind = catalog.kind_of(channel.kind) if channel is not None else None
    if kind is None or kind.poll is None:
        return 0
    try:
        return kind.poll(channel)
    except SendError as exc:
        if not channel_refused(channel=channel, error=exc):
            log.warning("channel %s not collected: %s", channel.pk, exc.code or type(exc).__name__)
        return 0
    except Exception as exc:  # noqa: BLE001 - an unreachable server is tried again at the next beat
        log.warning("channel %s not collected: %s", channel.pk, exc)
        return 0


# Telling the provider where to call us (adapter.connect / disconnect) ---------------------------


def _connect(channel: Channel, *, config: Mapping, secrets: Mapping, previous: Channel | None = None) -> dict | None:
    """Call the kind's `adapter.connect` with these credentials (before they are stored): the
    config it returns (the bot's name) is kept. None when the kind has no `connect` (or the
    credentials are incomplete). Raises ServiceError with the provider's refusal in words a
    person reads. When the credentials replace others (another bot), the previous ones are
    disconnected, best effort."""
    probe = Channel(organization_id=channel.organization_id, kind=channel.kind, uuid=channel.uuid, config=dict(config),
                    secrets=dict(secrets))
    try:
        adapter = catalog.adapter_for(probe)
    except LookupError:
        return None
    connect = getattr(adapter, "connect", None)
    if connect is None or adapter.missing_configuration():
        return None
    kind = catalog.KINDS[channel.kind]
    base = settings.PUBLIC_BASE_URL
    urls = {hook.name: base + hook.path.format(uuid=channel.uuid) for hook in kind.webhooks}
    try:
        connected = dict(connect(webhook_urls=urls) or {})
    except SendError as exc:
        log.info("channel %s (%s) not connected: %s", channel.pk or "new", channel.kind, exc.code or type(exc).__name__)
        raise ServiceError("connect_failed", exc.reason) from None
    if previous is not None and (previous.secrets or {}) != dict(secrets):
        _disconnect_quietly(previous)
    return connected


def _reconnect_wanted(channel: Channel, values: Mapping[str, str], *, config: Mapping, secrets: Mapping) -> bool:
    """Connect again when credentials were submitted (even the same ones: "save to reconnect"),
    changed, or the channel is in error (the admin is fixing it) or disabled (being enabled: a
    disabled channel was stored without connecting)."""
    kind = catalog.KINDS[channel.kind]
    submitted = any(str(values.get(c.name) or "").strip() for c in kind.credentials)
    changed = dict(config) != (channel.config or {}) or dict(secrets) != (channel.secrets or {})
    return submitted or changed or channel.status in (Channel.Status.ERROR, Channel.Status.DISABLED)


def _disconnect_quietly(channel: Channel) -> None:
    """Undo `connect` for credentials being replaced (the old bot stops calling us). Best effort:
    a revoked token cannot be disconnected, and nothing depends on it."""
    try:
        disconnect = getattr(catalog.adapter_for(channel), "disconnect", None)
        if disconnect is not None:
            disconnect()
    except (SendError, LookupError) as exc:
        log.info("channel %s: previous credentials not disconnected: %s", channel.pk, getattr(exc, "code", "") or
                 type(exc).__name__)
