"""What every provider adapter speaks. Adapters do HTTP only, never the ORM."""

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


def signatures_equal(expected: str, received: str) -> bool:
    """Constant-time comparison that also survives a header with non-ASCII bytes (a forgery
    must get 403, not a 500)."""
    return hmac.compare_digest(expected.encode(), received.encode())


class SendError(Exception):
    """A send that did not go through. `code` is the provider's, `reason` is for people."""

    def __init__(self, reason: str, *, code: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class PermanentSendError(SendError):
    """The provider refused; sending again will not help (bad number, opted out, bad credentials)."""

    def __init__(self, reason: str, *, code: str = "", effect: str = ""):
        super().__init__(reason, code=code)
        # What the refusal means for us: "configuration", "opted_out", "blocked", "window" or "".
        self.effect = effect


class TransientSendError(SendError):
    """The request did not take effect (429, 5xx, connection refused): safe to try again later."""

    def __init__(self, reason: str, *, code: str = "", retry_after: float | None = None):
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class UnknownSendError(SendError):
    """The request may have reached the provider (timeout after sending): never resend blindly."""


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
    kind: str  # "message" or "status"
    body: dict
    ref: str = ""  # the provider message id a status refers to


@dataclass(frozen=True)
class MediaRef:
    url: str
    content_type: str


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
    # Meta: a message the page itself sent from Meta's own apps (Page inbox, Instagram app).
    # `sender` is then the customer it went to; `app_id` the app that sent it (ours = skip).
    echo: bool = False
    app_id: str = ""
    sent_at: datetime | None = None  # the provider's timestamp, when it gives one


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


@dataclass(frozen=True)
class OutboundAttachment:
    url: str  # a signed, expiring public URL the provider fetches from us
    content_type: str
    filename: str


@dataclass(frozen=True)
class OutboundMessage:
    to: str  # the contact's address on this channel (E.164 for WhatsApp)
    text: str = ""
    attachments: tuple[OutboundAttachment, ...] = ()
    template_id: str = ""  # provider template id (Twilio ContentSid)
    template_variables: Mapping[str, str] = field(default_factory=dict)
    status_callback: str = ""  # where the provider should post delivery updates
    idempotency_key: str = ""
    # Meta: a message tag for sends outside the standard window ("HUMAN_AGENT"), and the
    # language of a WhatsApp Cloud template.
    tag: str = ""
    template_language: str = ""


@dataclass(frozen=True)
class SendResult:
    external_id: str
    status: str = "sent"


class Adapter(Protocol):
    kind: str

    def missing_configuration(self) -> list[str]: ...
    def verify_signature(self, request: WebhookRequest) -> bool: ...
    def split_webhook(self, request: WebhookRequest, *, kind: str) -> list[RawEvent]: ...
    def normalize(self, event_kind: str, body: dict) -> InboundMessage | StatusUpdate | None: ...
    def send(self, message: OutboundMessage) -> SendResult: ...
    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]: ...
