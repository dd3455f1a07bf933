"""The adapter registry: one adapter class per Channel.kind, built from the channel's stored config."""

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
