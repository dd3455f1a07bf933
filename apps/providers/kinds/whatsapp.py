"""What WhatsApp is, whoever carries it (Twilio, Meta's Cloud API, the sandbox): its family in
the inbox and its policy (the 24-hour window, opt-in, media)."""

from datetime import timedelta

from apps.providers.kinds.base import MB, ChannelPolicy, Family

FAMILY = Family(
    key="whatsapp",
    label="WhatsApp",
    order=10,
    always_listed=True,
    icon=(
        "M12 2a10 10 0 0 0-8.6 15.1L2 22l5-1.3A10 10 0 1 0 12 2Zm5.3 14.1c-.2.6-1.3 1.2-1.8 1.2-.5.1-1 .2-3.3-.7-2.8"
        "-1.1-4.5-3.9-4.7-4.1-.1-.2-1.1-1.5-1.1-2.8s.7-2 1-2.3c.2-.3.5-.3.7-.3h.5c.2 0 .4 0 .6.5l.8 2c.1.2.1.4 0 .5l"
        "-.3.5-.4.4c-.1.1-.3.3-.1.6.2.3.8 1.3 1.7 2.1 1.1 1 2.1 1.3 2.4 1.5.3.1.5.1.6-.1l.9-1.1c.2-.3.4-.2.7-.1l1.9.9c"
        ".3.1.5.2.5.3.1.2.1.7-.1 1.3Z"
    ),
)

WINDOW_WARNING = (
    "This contact hasn't messaged you for more than 24 hours; WhatsApp may require a template message."
)

MEDIA = {
    "image": (frozenset({"image/jpeg", "image/png"}), 5 * MB),
    "audio": (frozenset({"audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg"}), 16 * MB),
    "video": (frozenset({"video/mp4", "video/3gpp"}), 16 * MB),
    "document": (
        frozenset(
            {
                "application/pdf",
                "text/plain",
                "application/msword",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.ms-excel",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            }
        ),
        16 * MB,
    ),
}

POLICY = ChannelPolicy(
    label="WhatsApp",
    identity_kind="whatsapp",
    needs_phone=True,
    needs_opt_in=True,
    reply_window=timedelta(hours=24),
    window_warning=WINDOW_WARNING,
    text_limit=4096,
    media=MEDIA,
)
