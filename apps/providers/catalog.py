"""The channel catalog: every kind of channel Parley speaks, one line each.

A kind is declared once, in its provider family's module under `apps/providers/kinds/` (policy,
adapter, error classification, webhooks, credentials, capabilities, family). The generic
pipelines (webhooks, inbound processing, the outbox, receipts, the inbox, the admin, the API)
read this table and hold no per-kind tables of their own. Adding a kind: its module, one line
here, its fake server and tests (CONTRIBUTING.md).
"""

from django.views.decorators.debug import sensitive_variables

from apps.providers.kinds import email, meta, sandbox, telegram, twilio
from apps.providers.kinds.base import Adapter, ChannelKind, Family

KINDS: dict[str, ChannelKind] = {
    kind.key: kind
    for kind in (
        twilio.WHATSAPP,
        twilio.SMS,
        meta.WHATSAPP_CLOUD,
        meta.MESSENGER,
        meta.INSTAGRAM,
        telegram.TELEGRAM,
        email.EMAIL,
        sandbox.SANDBOX,
    )
}


def kind_of(key: str) -> ChannelKind | None:
    return KINDS.get(key)


def kind_choices() -> list[tuple[str, str]]:
    """Channel.kind's choices (a callable: a new kind needs no migration)."""
    return [(kind.key, kind.label) for kind in KINDS.values()]


def families() -> list[Family]:
    """Every family of the catalog's kinds, in the order "New message" lists them."""
    unique = {kind.family.key: kind.family for kind in KINDS.values()}
    return sorted(unique.values(), key=lambda family: (family.order, family.label))


def family_of(key: str) -> Family | None:
    kind = KINDS.get(key)
    return kind.family if kind else None


@sensitive_variables("extra")
def adapter_for(channel) -> Adapter:
    """The adapter of a channel's kind, built from its stored configuration. LookupError for a
    kind that does not send or receive (yet)."""
    kind = KINDS.get(channel.kind)
    if kind is None or kind.adapter is None:
        raise LookupError(f"No adapter for channel kind {channel.kind!r}")
    # The Meta app secret never shows among a debug page's (or error report's) local variables.
    extra = {"app": meta_app()} if kind.uses_meta_app else {}
    return kind.adapter(config=channel.config, secrets=channel.secrets, channel_uuid=str(channel.uuid), **extra)


def meta_app() -> dict:
    """The Meta app behind Messenger, Instagram and WhatsApp Cloud, for its adapters (which
    never touch the ORM themselves): app id, app secret and Graph version."""
    from apps.providers.models import MetaAppConfig  # models read the catalog for Channel.kind's choices

    app = MetaAppConfig.current()
    return {"app_id": app.app_id, "app_secret": app.app_secret, "graph_version": app.graph_version}


def webhook_urls() -> list:
    """App-level webhook URL patterns the kinds declare (Meta's one webhook), each once."""
    return _unique(pattern for kind in KINDS.values() for pattern in kind.urls)


def settings_urls() -> list:
    """Settings pages the kinds declare (Meta's connect flow), each once."""
    return _unique(pattern for kind in KINDS.values() for pattern in kind.settings_urls)


def _unique(patterns) -> list:
    seen, unique = set(), []
    for pattern in patterns:
        if pattern.name not in seen:
            seen.add(pattern.name)
            unique.append(pattern)
    return unique
