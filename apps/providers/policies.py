"""Channel policies: the one place that says what each kind of channel allows.

Reply windows, text limits, media types and sizes. Services validate against it; the inbox
banner and composer read it.
"""

from dataclasses import dataclass, field
from datetime import timedelta

MB = 1024 * 1024

WHATSAPP_WINDOW_WARNING = (
    "This contact hasn't messaged you for more than 24 hours; WhatsApp may require a template message."
)

WHATSAPP_MEDIA = {
    "image": ({"image/jpeg", "image/png"}, 5 * MB),
    "audio": ({"audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg"}, 16 * MB),
    "video": ({"video/mp4", "video/3gpp"}, 16 * MB),
    "document": (
        {
            "application/pdf",
            "text/plain",
            "application/msword",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.ms-excel",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        },
        16 * MB,
    ),
}


@dataclass(frozen=True)
class ChannelPolicy:
    label: str  # what agents call the channel ("WhatsApp")
    identity_kind: str  # ContactIdentity.Kind that addresses a contact here
    needs_phone: bool  # the contact's phone is the address (WhatsApp, SMS)
    needs_opt_in: bool  # WhatsApp requires recorded consent
    reply_window: timedelta | None  # free-form replies allowed this long after the last inbound
    window_warning: str = ""
    text_limit: int | None = None
    # category -> (allowed content types, max bytes); empty = no media on this channel.
    media: dict[str, tuple[set[str], int]] = field(default_factory=dict)
    max_attachments: int = 10
    # Meta: after `reply_window`, replies may still go out with a message tag until this long
    # after the last inbound (Messenger / Instagram `HUMAN_AGENT`: 7 days).
    extended_window: timedelta | None = None
    extended_window_tag: str = ""
    extended_window_note: str = ""  # the banner while the extended window is open
    window_closed: str = ""  # the refusal once every window has closed (else window_warning)

    def media_rule(self, content_type: str) -> tuple[str, int] | None:
        """The (category, max bytes) for a content type, or None when it is not allowed."""
        for category, (types, limit) in self.media.items():
            if content_type in types:
                return category, limit
        return None

    @property
    def accepted_types(self) -> list[str]:
        return sorted(t for types, _ in self.media.values() for t in types)


WHATSAPP = ChannelPolicy(
    label="WhatsApp",
    identity_kind="whatsapp",
    needs_phone=True,
    needs_opt_in=True,
    reply_window=timedelta(hours=24),
    window_warning=WHATSAPP_WINDOW_WARNING,
    text_limit=4096,
    media=WHATSAPP_MEDIA,
)

META_MEDIA_TYPES = {
    "image": {"image/jpeg", "image/png", "image/gif", "image/webp"},
    "video": {"video/mp4", "video/quicktime", "video/webm", "video/3gpp"},
    "audio": {"audio/mpeg", "audio/mp4", "audio/aac", "audio/ogg", "audio/wav", "audio/x-wav"},
    "document": {
        "application/pdf",
        "text/plain",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/zip",
    },
}


def _meta_policy(label: str, identity_kind: str, *, text_limit: int, image_max: int, other_max: int) -> ChannelPolicy:
    return ChannelPolicy(
        label=label,
        identity_kind=identity_kind,
        needs_phone=False,
        needs_opt_in=False,
        reply_window=timedelta(hours=24),
        window_warning=f"This contact hasn't messaged you for more than 7 days; {label} allows no reply until they write again.",
        text_limit=text_limit,
        media={
            category: (types, image_max if category == "image" else other_max)
            for category, types in META_MEDIA_TYPES.items()
        },
        extended_window=timedelta(days=7),
        extended_window_tag="HUMAN_AGENT",
        extended_window_note=(
            f"More than 24 hours since this contact's last message: replies go out as {label} human agent "
            "replies, allowed until 7 days after it."
        ),
        window_closed=f"Failed to send via {label}: the 7-day window for human agent replies has closed.",
    )


POLICIES: dict[str, ChannelPolicy] = {
    "twilio_whatsapp": WHATSAPP,
    "meta_whatsapp": WHATSAPP,
    # The sandbox stands in for WhatsApp so the demo shows the same rules.
    "sandbox": WHATSAPP,
    "twilio_sms": ChannelPolicy(
        label="SMS", identity_kind="phone", needs_phone=True, needs_opt_in=False, reply_window=None, text_limit=1600
    ),
    "telegram": ChannelPolicy(
        label="Telegram",
        identity_kind="telegram",
        needs_phone=False,
        needs_opt_in=False,
        reply_window=None,
        text_limit=4096,
        media={
            "image": ({"image/jpeg", "image/png", "image/gif", "image/webp"}, 10 * MB),
            "audio": ({"audio/mpeg", "audio/ogg", "audio/mp4"}, 50 * MB),
            "video": ({"video/mp4"}, 50 * MB),
            "document": ({"application/pdf", "text/plain", "application/zip"}, 50 * MB),
        },
    ),
    "messenger": _meta_policy("Messenger", "messenger", text_limit=2000, image_max=25 * MB, other_max=25 * MB),
    "instagram": _meta_policy("Instagram", "instagram", text_limit=1000, image_max=8 * MB, other_max=25 * MB),
    "email": ChannelPolicy(
        label="Email", identity_kind="email", needs_phone=False, needs_opt_in=False, reply_window=None, text_limit=None
    ),
}


def policy_for(kind: str) -> ChannelPolicy:
    return POLICIES[kind]
