"""What every channel kind declares, and what every adapter speaks.

A kind (`ChannelKind`) is one `Channel.kind`: its policy (reply window, text limit, media), its
adapter (verify, split, normalize, send, and the classification of its own error codes into
effects), its webhooks, its credentials, its capabilities and how agents see it (family, label,
icon). Each provider family declares its kinds in one module under `apps/providers/kinds/`; the
catalog (`apps/providers/catalog.py`) lists them. The generic pipelines read the catalog and hold
no provider codes and no per-kind tables.

Adapters do HTTP (or SMTP/IMAP) only, never the ORM.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from django.utils import timezone

MB = 1024 * 1024


def signatures_equal(expected: str, received: str) -> bool:
    """Constant-time comparison that also survives a header with non-ASCII bytes (a forgery
    must get 403, not a 500)."""
    return hmac.compare_digest(expected.encode(), received.encode())


# Effects ---------------------------------------------------------------------------------------
# What a provider's refusal means for us. Each kind's classifier maps its own codes onto these;
# `conversations.services.refusal_apply` carries them out, whichever pipeline met the refusal
# (a refused send or a failed status callback).

CONFIGURATION = "configuration"  # the credentials, sender or token are wrong: the channel goes to error
OPT_OUT = "opt_out"  # the contact unsubscribed on this channel kind
BLOCKED = "blocked"  # the contact blocked us on this channel kind
WINDOW_CLOSED = "window_closed"  # the provider says the reply window is closed
RATE_LIMITED = "rate_limited"  # slow down (transient)
EFFECTS = (CONFIGURATION, OPT_OUT, BLOCKED, WINDOW_CLOSED, RATE_LIMITED)


class SendError(Exception):
    """A send that did not go through. `code` is the provider's, `reason` is for people."""

    def __init__(self, reason: str, *, code: str = "", effect: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.effect = effect


class PermanentSendError(SendError):
    """The provider refused; sending again will not help (bad number, opted out, bad credentials)."""


class TransientSendError(SendError):
    """The request did not take effect (429, 5xx, connection refused): safe to try again later."""

    def __init__(self, reason: str, *, code: str = "", retry_after: float | None = None, effect: str = ""):
        super().__init__(reason, code=code, effect=effect)
        self.retry_after = retry_after


class UnknownSendError(SendError):
    """The request may have reached the provider (timeout after sending): never resend blindly."""


# Policy ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowState:
    open: bool
    closes_at: datetime | None
    warning: str
    # Open only through a message tag (Messenger / Instagram `HUMAN_AGENT` between 24 h and 7 days).
    tag: str = ""
    refusal: str = ""  # what a refused send says (defaults to the warning)


@dataclass(frozen=True)
class ChannelPolicy:
    """What a kind of channel allows. Services validate against it; the inbox banner and
    composer read it."""

    label: str  # what agents call the channel ("WhatsApp")
    identity_kind: str  # ContactIdentity.Kind that addresses a contact here, and the scope of its consent
    needs_phone: bool  # the contact's phone is the address (WhatsApp, SMS)
    needs_opt_in: bool  # recorded consent is required before we write (WhatsApp)
    reply_window: timedelta | None  # free-form replies allowed this long after the last inbound
    window_warning: str = ""
    text_limit: int | None = None
    # category -> (allowed content types, max bytes); empty = no media on this channel.
    media: Mapping[str, tuple[frozenset[str], int]] = field(default_factory=dict)
    max_attachments: int = 10
    # Reply buttons a message may carry (Telegram's inline keyboard): how many, and how long each
    # label may be. 0: none. A tap comes back as the customer's reply, in the button's words.
    max_buttons: int = 0
    button_text_limit: int = 64
    # After `reply_window`, replies may still go out with a message tag until this long after the
    # last inbound (Messenger / Instagram `HUMAN_AGENT`: 7 days).
    extended_window: timedelta | None = None
    extended_window_tag: str = ""
    extended_window_note: str = ""  # the banner while the extended window is open
    window_closed: str = ""  # the refusal once every window has closed (else window_warning)
    blocked_refusal: str = ""  # the refusal for a contact blocked on this kind (else the generic one)

    def media_rule(self, content_type: str) -> tuple[str, int] | None:
        """The (category, max bytes) for a content type, or None when it is not allowed."""
        for category, (types, limit) in self.media.items():
            if content_type in types:
                return category, limit
        return None

    @property
    def accepted_types(self) -> list[str]:
        return sorted(t for types, _ in self.media.values() for t in types)

    def window(self, last_inbound_at: datetime | None, *, now: datetime | None = None) -> WindowState:
        """Whether a free-form reply is allowed now. Channels without a window are always open.
        A second, tagged window (Meta) is open with `tag` set, and the banner says so."""
        if self.reply_window is None:
            return WindowState(open=True, closes_at=None, warning="")
        closed_refusal = self.window_closed or self.window_warning
        if last_inbound_at is None:
            return WindowState(open=False, closes_at=None, warning=self.window_warning, refusal=closed_refusal)
        now = now or timezone.now()
        closes_at = last_inbound_at + self.reply_window
        if now < closes_at:
            return WindowState(open=True, closes_at=closes_at, warning="")
        if self.extended_window is not None:
            extended_closes_at = last_inbound_at + self.extended_window
            if now < extended_closes_at:
                return WindowState(
                    open=True, closes_at=extended_closes_at, warning=self.extended_window_note,
                    tag=self.extended_window_tag,
                )
        return WindowState(open=False, closes_at=closes_at, warning=self.window_warning, refusal=closed_refusal)


# Webhook and provider data ---------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    url: str  # the public URL the provider called (signatures cover it)
    headers: Mapping[str, str]
    body: bytes  # raw: signatures cover bytes, not request.POST
    params: Mapping[str, list[str]] = field(default_factory=dict)  # parsed form or query


@dataclass(frozen=True)
class RawEvent:
    """One event split out of a webhook, stored as-is in InboundEvent before anything else."""

    event_id: str  # unique per destination: the idempotency key
    kind: str  # "message", "status", "echo", "reaction", "unsend", "watermark", "other"
    body: dict
    ref: str = ""  # the provider message id a status refers to


@dataclass(frozen=True)
class MediaRef:
    url: str  # where the provider keeps it; for media the message carries itself, its reference ("cid:…")
    content_type: str
    # Media the message carries itself (an email's attachments): no download, these bytes.
    content: bytes | None = None
    filename: str = ""  # the sender's name for the file, when the provider says (a document)


@dataclass(frozen=True)
class InboundMessage:
    external_id: str  # provider's id; unique per channel, our idempotency key
    sender: str  # phone (E.164), PSID, chat id or email address
    text: str = ""
    sender_name: str = ""
    media: tuple[MediaRef, ...] = ()
    location: dict | None = None
    # "opt_out" / "opt_in" when the customer sent STOP / START (or the provider says so).
    consent: str = ""
    # A message the account itself sent from the provider's own apps (Page inbox, Instagram
    # app). `sender` is then the customer it went to; `app_id` the app that sent it (ours = skip).
    echo: bool = False
    app_id: str = ""
    sent_at: datetime | None = None  # the provider's timestamp, when it gives one
    # Threads (email). A conversation continues when this message answers one of its messages
    # (`replies_to`: provider ids, newest first) or was sent to its reply address (`reply_token`);
    # else it starts a new one keyed by `thread` (a kind without threads leaves all three empty:
    # one conversation per contact and channel).
    replies_to: tuple[str, ...] = ()
    reply_token: str = ""
    thread: str = ""
    subject: str = ""
    # Sent by a machine (an auto-reply, an out-of-office): marked, and never answered automatically.
    automated: bool = False
    # What the kind shows beside the text (email: sender, recipients, sanitized HTML, the full text
    # with its quoted history): kept on the message as `Message.details`.
    details: Mapping | None = None
    # What the provider tells us about the contact, kept in their custom attributes (their
    # Telegram username, the payload of the deep link they came through).
    contact_attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageEdit:
    """The customer edited a message they sent: its new text (or caption)."""

    external_id: str
    sender: str
    text: str
    edited_at: datetime | None = None  # the provider's time of the edit: an older edit never wins


@dataclass(frozen=True)
class ConsentChange:
    """What we may send the contact behind `sender` on this kind of channel changed, without a
    message: "block" / "unblock" (a Telegram user stopped or restarted the bot; an email
    complaint or hard bounce), "opt_out" / "opt_in"; with the reason."""

    sender: str
    change: str
    reason: str = ""


@dataclass(frozen=True)
class Watermark:
    """Every outbound message of the conversation with `sender` up to `watermark` was delivered
    or read (Messenger / Instagram). Instagram names a message instead: `external_id`."""

    kind: str  # "delivery" or "read"
    sender: str  # the customer's PSID / IGSID
    watermark: datetime | None = None
    external_id: str = ""


@dataclass(frozen=True)
class Reaction:
    external_id: str  # the message reacted to
    sender: str
    emoji: str  # empty when removed
    action: str  # "react" or "unreact"
    by: str = "contact"


@dataclass(frozen=True)
class Unsend:
    external_id: str  # the message the customer deleted
    sender: str


@dataclass(frozen=True)
class StatusUpdate:
    external_id: str
    status: str  # one of Message.Status values
    error_code: str = ""
    error_reason: str = ""
    effect: str = ""  # what a failure means for us (EFFECTS), classified by the kind


@dataclass(frozen=True)
class OutboundAttachment:
    url: str  # a signed, expiring public URL the provider fetches from us
    content_type: str
    filename: str
    # The file's bytes, for providers that take uploads rather than links (SMTP; Telegram by URL
    # only takes small photos and a few document types).
    read: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class OutboundMessage:
    to: str  # the contact's address on this channel (E.164 for WhatsApp)
    text: str = ""
    attachments: tuple[OutboundAttachment, ...] = ()
    template_id: str = ""  # provider template id (Twilio ContentSid, WhatsApp Cloud template name)
    template_variables: Mapping[str, str] = field(default_factory=dict)
    template_language: str = ""
    status_callback: str = ""  # where the provider should post delivery updates
    idempotency_key: str = ""
    tag: str = ""  # a message tag for sends outside the standard window ("HUMAN_AGENT")
    # Threads (email): the subject, the provider ids of the conversation's earlier messages
    # (oldest first: References, the last one In-Reply-To), and the conversation's reply token.
    subject: str = ""
    replies_to: tuple[str, ...] = ()
    reply_token: str = ""
    signature: str = ""  # the agent's signature, appended by kinds that sign (email)
    buttons: tuple[str, ...] = ()  # reply buttons' labels (policy.max_buttons), under the message


@dataclass(frozen=True)
class SendResult:
    external_id: str
    status: str = "sent"


@dataclass(frozen=True)
class Health:
    """What "Check connection" found: one sentence a person reads, and details (a bot's name, the
    provider's last webhook error, the mailbox checked)."""

    ok: bool
    summary: str
    details: tuple[str, ...] = ()


class Adapter(Protocol):
    """Built by the catalog from a channel's stored config: `kind(config=..., secrets=...,
    channel_uuid=..., app=...)`. HTTP (or SMTP/IMAP) only, never the ORM.

    Optional, where the provider has them:
    - `check() -> Health`: ask the provider whether the credentials work ("Check connection");
    - `connect(*, webhook_urls: Mapping[str, str]) -> Mapping[str, str]`: tell the provider where
      to call us (Telegram `setWebhook`) when the channel is connected or its credentials change;
      returns config to store (the bot's name);
    - `disconnect() -> None`: undo `connect` (Telegram `deleteWebhook`) when the channel is
      disconnected;
      `check`, `connect` and `disconnect` raise SendError subclasses with the sentence to show;
    - `acknowledge(event_kind, body) -> None`: answer the provider about an event once it is
      processed, where the provider waits for that (Telegram `answerCallbackQuery` stops the
      spinner on the button the customer tapped). Called once per event, after its processing
      committed, best effort: a failure is logged and changes nothing;
    - `mark_read(*, to, external_id)`, `typing(*, to)`, `profile(user_id) -> {"name", "avatar_url"}`.
    """

    def missing_configuration(self) -> list[str]: ...
    def verify_signature(self, request: WebhookRequest) -> bool: ...
    def split_webhook(self, request: WebhookRequest, *, kind: str) -> list[RawEvent]: ...
    def normalize(self, event_kind: str, body: dict): ...  # InboundMessage | StatusUpdate | ... | None
    def send(self, message: OutboundMessage) -> SendResult: ...
    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]: ...


# The declaration of a kind ----------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """How agents group channels ("WhatsApp" whoever carries it): label, icon and order in
    "New message"; `always_listed` families show there even before one is connected."""

    key: str
    label: str
    icon: str  # SVG path data (24×24 viewBox), constant markup
    order: int
    always_listed: bool = False


@dataclass(frozen=True)
class Capabilities:
    read_receipts: bool = False  # we can tell the customer's app a message was seen
    typing: bool = False  # we can show "typing…" in the customer's app
    templates: bool = False  # provider-approved templates (sendable outside the window)
    segments: bool = False  # text is billed in SMS segments
    reactions: bool = False
    unsend: bool = False
    profiles: bool = False  # a new sender's name and picture can be looked up (adapter.profile)
    # Conversations are threads with a subject (email): the composer asks for one, and a message
    # started from "New message" opens a new thread rather than continuing the last one.
    threads: bool = False


@dataclass(frozen=True)
class Webhook:
    """A per-channel webhook: `POST /webhooks/<hook>/<channel uuid>/` plus `<sub>/` when set.

    `event_kind` is what the adapter splits the body as; `name` is what the settings page and
    the API call the URL ("inbound", "status"); `answer` builds the 2xx response the provider
    expects once the events are recorded."""

    hook: str
    name: str
    event_kind: str = "message"
    sub: str = ""
    answer: Callable[[], object] | None = None  # -> HttpResponse; None: 200 with an empty body
    # One URL for every channel of the kind (`/webhooks/<hook>/`, Meta's), served by a view the
    # kind declares in `urls`; listed here so the settings page and the API show it.
    app_level: bool = False

    @property
    def path(self) -> str:
        if self.app_level:
            return f"/webhooks/{self.hook}/"
        return f"/webhooks/{self.hook}/{{uuid}}/" + (f"{self.sub}/" if self.sub else "")


@dataclass(frozen=True)
class SimulatedWebhook:
    """A webhook as the provider would send it (signed), for `manage.py simulate_inbound`."""

    path: str
    body: bytes
    content_type: str
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Credential:
    """One setting of a channel, as its forms (admin, settings page) and the API show it.
    Secrets are write-only: stored encrypted in `Channel.secrets`, shown as "set"."""

    name: str  # the key in Channel.config, or in Channel.secrets when `secret`
    label: str
    help: str = ""
    secret: bool = False
    required: bool = True
    max_length: int = 200
    # (value, every submitted value) -> the stored value, or ValueError with the sentence to show.
    clean: Callable[[str, Mapping[str, str]], str] | None = None
    # Makes a value when none is given or stored (a secret we choose ourselves).
    generate: Callable[[], str] | None = None


@dataclass(frozen=True)
class ChannelKind:
    key: str  # Channel.kind
    label: str  # its full name ("WhatsApp (Twilio)")
    family: Family
    provider: str  # who calls our webhooks (InboundEvent.provider): "twilio", "meta", ...
    policy: ChannelPolicy
    adapter: type | None  # None: the kind can be stored but does not send or receive yet
    webhooks: tuple[Webhook, ...] = ()
    credentials: tuple[Credential, ...] = ()
    capabilities: Capabilities = Capabilities()
    # The webhook that receives delivery statuses, sent with each message (Twilio StatusCallback).
    status_callback: str = ""
    # Events name the channel by its provider id in the body (Meta: page, Instagram account or
    # phone number id = Channel.address) rather than by our uuid in the URL.
    routes_by_address: bool = False
    # The adapter also needs the system-wide Meta app (secret, Graph version).
    uses_meta_app: bool = False
    # The config key whose value is Channel.address (how `routes_by_address` webhooks find it).
    address_from: str = ""
    # Channels that share credentials with this one (the same page token) and fail with it:
    # the config key they share ("page_id"), or "" for none.
    shared_credential: str = ""
    # The channel's status reason when its credentials stop working (else the refusal's own words).
    reconnect_reason: str = ""
    # App-level URL patterns under /webhooks/ and /settings/ (Meta: one webhook for every page).
    urls: tuple = ()
    settings_urls: tuple = ()
    # Builds the signed inbound webhook the provider would post for a message from `sender`:
    # (channel, sender, name, text, media_url) -> SimulatedWebhook; raises ValueError to refuse.
    simulate: Callable | None = None
    # Fetches what the provider keeps for us to collect (an IMAP mailbox) and records it as
    # events: (channel) -> the number of new events. A beat task calls it for active channels.
    poll: Callable | None = None

    def webhook(self, name: str) -> Webhook | None:
        return next((hook for hook in self.webhooks if hook.name == name), None)
