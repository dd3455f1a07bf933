"""The adapter registry: one adapter class per Channel.kind, built from the channel's stored config."""

import time
from dataclasses import dataclass

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.views.decorators.debug import sensitive_variables

from apps.providers.adapters.base import Adapter
from apps.providers.models import Channel

_ADAPTERS: dict[str, type] = {}


def register(kind: str):
    def decorate(cls):
        _ADAPTERS[kind] = cls
        cls.kind = kind
        return cls

    return decorate


# The Meta app secret never shows among a debug page's (or error report's) local variables.
@sensitive_variables("extra")
def adapter_for(channel: Channel) -> Adapter:
    _load()
    try:
        cls = _ADAPTERS[channel.kind]
    except KeyError:
        raise LookupError(f"No adapter for channel kind {channel.kind!r}") from None
    extra = {"app": meta_app()} if getattr(cls, "uses_meta_app", False) else {}
    return cls(config=channel.config, secrets=channel.secrets, channel_uuid=str(channel.uuid), **extra)


def meta_app() -> dict:
    """The Meta app behind Messenger, Instagram and WhatsApp Cloud, for its adapters (which
    never touch the ORM themselves): app id, app secret and Graph version."""
    from apps.providers.models import MetaAppConfig

    app = MetaAppConfig.current()
    return {"app_id": app.app_id, "app_secret": app.app_secret, "graph_version": app.graph_version}


def registered_kinds() -> list[str]:
    _load()
    return sorted(_ADAPTERS)


def _load() -> None:
    # Importing the modules registers them; kept lazy so models import without provider SDKs.
    from apps.providers.adapters import meta, sandbox, twilio  # noqa: F401


# Webhooks --------------------------------------------------------------------------------------

# Every webhook names its channel; loading it (and decrypting its token) was a fifth of a webhook's
# CPU. Config is read-mostly, so each process keeps the channel and its adapter briefly: after
# WEBHOOK_CACHE_SECONDS one query on `updated_at` says whether they still hold. A save in this
# process forgets the entry at once; other processes see it within the TTL. Nothing else is kept:
# what another process needs (the events) is in the database before we answer.
WEBHOOK_CACHE_SECONDS = 5.0
WEBHOOK_CACHE_MAX = 1000


@dataclass(frozen=True)
class _Cached:
    channel: Channel
    adapter: Adapter
    expires: float


_webhook_cache: dict[str, _Cached] = {}


def webhook_target(uuid: str) -> tuple[Channel, Adapter] | None:
    """The channel a webhook URL names and its adapter, or None. Raises LookupError for a kind
    without an adapter. The channel is shared between requests: read it, never change it."""
    now = time.monotonic()
    hit = _webhook_cache.get(uuid)
    if hit is not None:
        if now < hit.expires:
            return hit.channel, hit.adapter
        updated_at = Channel.objects.filter(uuid=uuid).values_list("updated_at", flat=True).first()
        if updated_at is not None and updated_at == hit.channel.updated_at:
            _webhook_cache[uuid] = _Cached(hit.channel, hit.adapter, now + WEBHOOK_CACHE_SECONDS)
            return hit.channel, hit.adapter
    from apps.providers import selectors

    channel = selectors.channel_get_by_uuid(uuid=uuid)
    if channel is None:
        _webhook_cache.pop(uuid, None)
        return None
    adapter = adapter_for(channel)
    # Adapters that also hold the Meta app's secret depend on a second row: not cached.
    if not getattr(type(adapter), "uses_meta_app", False):
        if len(_webhook_cache) >= WEBHOOK_CACHE_MAX:
            _webhook_cache.clear()
        _webhook_cache[uuid] = _Cached(channel, adapter, now + WEBHOOK_CACHE_SECONDS)
    return channel, adapter


def webhook_forget(uuid: str | None = None) -> None:
    """Drop one cached channel (or all): the next webhook loads it again."""
    if uuid is None:
        _webhook_cache.clear()
    else:
        _webhook_cache.pop(str(uuid), None)


@receiver(post_save, sender=Channel, dispatch_uid="providers.registry.webhook_forget.save")
@receiver(post_delete, sender=Channel, dispatch_uid="providers.registry.webhook_forget.delete")
def _channel_changed(sender, instance: Channel, **kwargs) -> None:
    # Cache invalidation only (this process); other processes notice updated_at within the TTL.
    webhook_forget(instance.uuid)
