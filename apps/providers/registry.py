"""The adapter registry: one adapter class per Channel.kind, built from the channel's stored config."""

from apps.providers.adapters.base import Adapter
from apps.providers.models import Channel

_ADAPTERS: dict[str, type] = {}


def register(kind: str):
    def decorate(cls):
        _ADAPTERS[kind] = cls
        cls.kind = kind
        return cls

    return decorate


def adapter_for(channel: Channel) -> Adapter:
    _load()
    try:
        cls = _ADAPTERS[channel.kind]
    except KeyError:
        raise LookupError(f"No adapter for channel kind {channel.kind!r}") from None
    return cls(config=channel.config, secrets=channel.secrets, channel_uuid=str(channel.uuid))


def registered_kinds() -> list[str]:
    _load()
    return sorted(_ADAPTERS)


def _load() -> None:
    # Importing the modules registers them; kept lazy so models import without provider SDKs.
    from apps.providers.adapters import sandbox, twilio  # noqa: F401
