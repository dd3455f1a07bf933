"""Template helpers for the inbox: safe links in customer text, times, ticks, icons.

Everything a customer sent is escaped before any markup is added here; nothing from user data
ever becomes an attribute name or an `hx-*` attribute.
"""

import re
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from apps.providers import catalog

register = template.Library()

# A speech bubble, for a kind the catalog does not know (a channel whose kind was removed).
FALLBACK_ICON = "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-5 4V5a2 2 0 0 1 2-2Z"

# Only http(s) URLs become links; the characters that end a URL are the ones that would end an
# attribute value or a tag, so the match never needs unescaping.
URL_RE = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
TRAILING = ".,;:!?)]}"


@register.filter(is_safe=True)
def linkify(text) -> str:
    """Escape `text`, keep its line breaks, and make http(s) URLs clickable links."""
    text = "" if text is None else str(text)
    parts: list[str] = []
    position = 0
    for match in URL_RE.finditer(text):
        url = match.group(0)
        trimmed = url.rstrip(TRAILING)
        # "(see https://x.test/a_(b))": keep a closing bracket that has its opening one.
        while url != trimmed and trimmed.count("(") > trimmed.count(")") and url[len(trimmed)] == ")":
            trimmed += ")"
        parts.append(escape(text[position : match.start()]))
        parts.append(
            format_html(
                '<a href="{}" target="_blank" rel="noopener noreferrer nofollow">{}</a>', trimmed, trimmed
            )
        )
        position = match.start() + len(trimmed)
    parts.append(escape(text[position:]))
    html = "".join(str(part) for part in parts)
    return mark_safe(html.replace("\r\n", "\n").replace("\n", "<br>"))


def relative(value: datetime, now: datetime | None = None) -> str:
    now = now or timezone.now()
    seconds = (now - value).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    local, today = timezone.localtime(value), timezone.localtime(now).date()
    if local.date() == today - timedelta(days=1):
        return "yesterday"
    if seconds < 7 * 86400:
        return local.strftime("%a")
    if local.year == today.year:
        return f"{local.day} {local.strftime('%b')}"
    return f"{local.day} {local.strftime('%b %Y')}"


def _browser_time(context) -> str:
    # Live fragments are rendered once for every viewer, in UTC: inbox.js formats these in the
    # browser's zone. Pages format in the agent's zone (tz cookie) and need no script.
    return " data-browser-time" if context.get("browser_time") else ""


@register.simple_tag(takes_context=True)
def reltime(context, value, css_class: str = "") -> str:
    """`<time>` with the ISO instant, the exact local time on hover and a relative label
    (inbox.js refreshes the label every minute)."""
    if not value:
        return ""
    local = timezone.localtime(value)
    exact = f"{local.strftime('%a')} {local.day} {local.strftime('%b %Y, %H:%M')} ({local.tzname()})"
    return format_html(
        '<time class="{}" datetime="{}" title="{}" data-relative{}>{}</time>',
        css_class,
        value.isoformat(),
        exact,
        mark_safe(_browser_time(context)),
        relative(value),
    )


@register.simple_tag(takes_context=True)
def clocktime(context, value) -> str:
    """The local hour of a message, exact on hover (bubbles show the time of day)."""
    if not value:
        return ""
    local = timezone.localtime(value)
    exact = f"{local.strftime('%a')} {local.day} {local.strftime('%b %Y, %H:%M:%S')} ({local.tzname()})"
    return format_html(
        '<time datetime="{}" title="{}" data-clock{}>{}</time>',
        value.isoformat(),
        exact,
        mark_safe(_browser_time(context)),
        local.strftime("%H:%M"),
    )


@register.simple_tag
def sender_label(message, conversation, viewer) -> str:
    """Who a bubble is from: "You", another agent's name, "Bot", or the contact ("User").
    Without a viewer (live fragments) an agent is named; live.js says "You" in the sender's
    own browser from the bubble's `data-sender-id`."""
    if message.direction == "inbound":
        return conversation.contact.display_name
    if message.sender_kind == "bot":
        return "Bot"
    sender = message.sender
    if sender is None:
        return "Agent"
    if viewer is not None and sender.pk == viewer.pk:
        return "You"
    return sender.get_full_name() or sender.get_username()


@register.filter
def window_left(closes_at) -> str:
    """"5 h 12 min" until `closes_at`."""
    if not closes_at:
        return ""
    minutes = max(0, int((closes_at - timezone.now()).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


@register.simple_tag
def channel_icon(kind: str, label: str = "") -> str:
    """The glyph of a channel's family (WhatsApp, Telegram, ...), coloured by CSS (`.ch-<family>`)."""
    family = catalog.family_of(kind)
    return format_html(
        '<svg class="ch-icon ch-{}" viewBox="0 0 24 24" width="16" height="16" role="img" aria-label="{}">'
        '<path d="{}"/></svg>',
        family.key if family else "other",
        label or (family.label if family else kind),
        family.icon if family else FALLBACK_ICON,
    )


@register.filter
def sends_typing(channel) -> bool:
    """The channel shows the agent's typing in the customer's app (its kind can, its setting allows)."""
    from apps.conversations import receipts

    return channel is not None and receipts.typing_allowed(channel)


@register.filter
def initials(name) -> str:
    words = [w for w in str(name or "").split() if w[:1].isalnum()]
    if not words:
        return "?"
    return (words[0][0] + (words[1][0] if len(words) > 1 else "")).upper()


@register.filter
def avatar_hue(value) -> int:
    """A stable colour per contact, from its id."""
    try:
        return (int(value) * 47) % 360
    except (TypeError, ValueError):
        return 210


@register.filter
def attachment_src(attachment) -> str:
    from apps.conversations.attachments import attachment_url

    return attachment_url(attachment)


@register.simple_tag(takes_context=True)
def organization_choices(context):
    """The organizations the signed-in user may switch between (one query)."""
    from apps.accounts import selectors as account_selectors

    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    return list(account_selectors.membership_list_for_user(user=user))


@register.filter
def map_url(location) -> str:
    """An OpenStreetMap link for a shared location, only when both coordinates are numbers."""
    if not isinstance(location, dict):
        return ""
    try:
        lat = float(location.get("latitude", location.get("lat")))
        lon = float(location.get("longitude", location.get("lng", location.get("lon"))))
    except (TypeError, ValueError):
        return ""
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return ""
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=16/{lat:.6f}/{lon:.6f}"


OPT_IN_SOURCES = {
    "contact_wrote_first": "they wrote to us first",
    "agent": "recorded by an agent",
    "import": "imported",
    "api": "recorded through the API",
    "demo": "demo data",
}


@register.filter
def attribute_label(name) -> str:
    """A contact attribute's name as agents read it ("telegram_deep_link" -> "Telegram deep link")."""
    name = str(name)
    return name.replace("_", " ").strip().capitalize() or name


@register.filter
def opt_in_source(value) -> str:
    return OPT_IN_SOURCES.get(str(value), str(value).replace("_", " "))


FILE_ICONS = {
    "image": '<path d="M5 3h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2Zm0 2v10.6l3.3-3.3a1 1 0 0 1 1.4 0l2.3 2.3 4.3-4.3a1 1 0 0 1 1.4 0L19 11.6V5H5Zm3.5 1.5a2 2 0 1 1 0 4 2 2 0 0 1 0-4Z"/>',
    "audio": '<path d="M12 3v10.6A4 4 0 1 0 14 17V7h4V3h-6Z"/>',
    "video": '<path d="M4 5h11a2 2 0 0 1 2 2v2.5l4-2.5v10l-4-2.5V17a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2Z"/>',
    "document": '<path d="M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2Zm7 1.5V9h5.5L13 3.5ZM8 13v2h8v-2H8Zm0 4v2h5v-2H8Z"/>',
    "clock": '<path d="M12 2a10 10 0 1 1 0 20 10 10 0 0 1 0-20Zm0 2a8 8 0 1 0 0 16 8 8 0 0 0 0-16Zm1 3v4.6l3.2 3.2-1.4 1.4L11 12.4V7h2Z"/>',
}


@register.simple_tag
def file_icon(category: str, size: int = 20) -> str:
    path = FILE_ICONS.get(category, FILE_ICONS["document"])
    return format_html(
        '<svg class="file-glyph file-glyph-{}" viewBox="0 0 24 24" width="{}" height="{}" aria-hidden="true">{}</svg>',
        category if category in FILE_ICONS else "document",
        size,
        size,
        mark_safe(path),  # constant markup from this module
    )
