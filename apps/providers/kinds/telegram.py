"""Telegram bots. The family and policy are known; the adapter (Bot API, `setWebhook`, intake
by secret token) is still to come (the channels issue): until then such a channel is stored
but never sends and has no webhook."""

from apps.providers.kinds.base import MB, ChannelKind, ChannelPolicy, Family

FAMILY = Family(
    key="telegram",
    label="Telegram",
    order=30,
    always_listed=True,
    icon=(
        "M21.5 3.6 2.9 10.8c-1.3.5-1.2 1.2-.2 1.5l4.8 1.5 1.8 5.6c.2.6.4.8.9.8.4 0 .6-.2.9-.5l2.3-2.2 4.7 3.5c.9.5 1.5"
        ".2 1.7-.8l3.1-14.7c.3-1.3-.5-1.9-1.4-1.5ZM9.7 14l-.4 3.6-1.3-4.3 10-6.3L9.7 14Z"
    ),
)

TELEGRAM = ChannelKind(
    key="telegram",
    label="Telegram",
    family=FAMILY,
    provider="telegram",
    policy=ChannelPolicy(
        label="Telegram",
        identity_kind="telegram",
        needs_phone=False,
        needs_opt_in=False,
        reply_window=None,
        text_limit=4096,
        media={
            "image": (frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}), 10 * MB),
            "audio": (frozenset({"audio/mpeg", "audio/ogg", "audio/mp4"}), 50 * MB),
            "video": (frozenset({"video/mp4"}), 50 * MB),
            "document": (frozenset({"application/pdf", "text/plain", "application/zip"}), 50 * MB),
        },
    ),
    adapter=None,
)
