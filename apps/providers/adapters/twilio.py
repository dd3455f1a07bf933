"""WhatsApp through Twilio Programmable Messaging, with the organization's own account."""

import hashlib
import json
import logging
import threading

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from apps.providers.adapters.base import (
    InboundMessage,
    MediaRef,
    OutboundMessage,
    PermanentSendError,
    RawEvent,
    SendResult,
    StatusUpdate,
    TransientSendError,
    UnknownSendError,
    WebhookRequest,
)
from apps.providers.media import fetch_limited
from apps.providers.registry import register

log = logging.getLogger(__name__)

INVALID_CONFIGURATION = "Invalid WhatsApp configuration for your organization. Please contact admin."
TWILIO_API = "https://api.twilio.com"

# Codes meaning the account, token or sender is wrong: the channel goes into error.
CONFIGURATION_CODES = {20003, 20404, 21212, 21606, 63007, 20008}
# What a refusal means for the contact or conversation, and how we say it.
EFFECTS = {
    21610: ("opted_out", "the contact has unsubscribed from your messages (they replied STOP)."),
    63016: ("window", "the 24-hour window is closed; WhatsApp requires a template message."),
    63024: ("", "the recipient is not a valid WhatsApp user."),
    63003: ("", "the recipient's phone number is not on WhatsApp."),
    21211: ("", "the contact's phone number is not valid."),
    21614: ("", "the contact's phone number cannot receive messages."),
    21408: ("", "sending to this country is not enabled on your Twilio account."),
    63018: ("", "the sender is sending too fast for WhatsApp; try again in a moment."),
    30007: ("blocked", "the message was filtered as spam by the carrier."),
    63032: ("blocked", "the contact has blocked this WhatsApp sender."),
}
STATUS_MAP = {
    "accepted": "sending",
    "scheduled": "sending",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
OPT_OUT_KEYWORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout"}
OPT_IN_KEYWORDS = {"start", "unstop", "subscribe"}


def whatsapp_address(number: str) -> str:
    number = number.strip()
    return number if number.startswith("whatsapp:") else f"whatsapp:{number}"


def strip_whatsapp(address: str) -> str:
    return address.removeprefix("whatsapp:").strip()


def reason_for(code: int | None, message: str) -> str:
    effect = EFFECTS.get(code or 0)
    detail = effect[1] if effect else (message or "Twilio refused the message.")
    return f"Failed to send via WhatsApp: {detail}"


class BaseUrlHttpClient(TwilioHttpClient):
    """The real Twilio HTTP client, pointed at TWILIO_API_BASE (a local fake in tests)."""

    def __init__(self, base: str):
        super().__init__()
        # requests takes (connect, read); the SDK's constructor only validates a single number.
        self.timeout = (settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT)
        self.base = base.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        # Read per request: one client lives as long as its worker (see _client).
        self.timeout = (settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT)
        if url.startswith(TWILIO_API):
            url = self.base + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


@register("twilio_whatsapp")
class TwilioWhatsAppAdapter:
    kind = "twilio_whatsapp"

    @sensitive_variables("secrets")
    def __init__(self, *, config: dict, secrets: dict, channel_uuid: str = ""):
        self.account_sid = (config.get("account_sid") or "").strip()
        self.sender = (config.get("sender") or "").strip()
        self.auth_token = (secrets.get("auth_token") or "").strip()

    def missing_configuration(self) -> list[str]:
        fields = {"account SID": self.account_sid, "auth token": self.auth_token, "WhatsApp sender": self.sender}
        return [name for name, value in fields.items() if not value]

    # Inbound -----------------------------------------------------------------------------

    def verify_signature(self, request: WebhookRequest) -> bool:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not self.auth_token:
            return False
        params = {key: values for key, values in request.params.items()}
        return RequestValidator(self.auth_token).validate(request.url, _MultiDict(params), signature)

    def split_webhook(self, request: WebhookRequest, *, kind: str) -> list[RawEvent]:
        body = {key: values[-1] if len(values) == 1 else values for key, values in request.params.items()}
        sid = str(body.get("MessageSid") or body.get("SmsSid") or "")
        if not sid or not body.get("From" if kind == "message" else "MessageStatus"):
            raise ValueError("Not a Twilio message webhook: MessageSid and From/MessageStatus are required.")
        if kind == "status":
            status = str(body["MessageStatus"])
            return [RawEvent(event_id=f"{sid}:{status}", kind="status", body=body, ref=sid)]
        return [RawEvent(event_id=sid, kind="message", body=body, ref=sid)]

    def normalize(self, event_kind: str, body: dict) -> InboundMessage | StatusUpdate | None:
        if event_kind == "status":
            status = STATUS_MAP.get(str(body.get("MessageStatus", "")).lower())
            if status is None:
                return None
            code = str(body.get("ErrorCode") or "")
            reason = reason_for(int(code), str(body.get("ErrorMessage") or "")) if code.isdigit() else ""
            return StatusUpdate(external_id=body["MessageSid"], status=status, error_code=code, error_reason=reason)
        count = int(body.get("NumMedia") or 0)
        media = tuple(
            MediaRef(url=body[f"MediaUrl{i}"], content_type=body.get(f"MediaContentType{i}", ""))
            for i in range(count)
            if body.get(f"MediaUrl{i}")
        )
        location = None
        if body.get("Latitude") and body.get("Longitude"):
            location = {
                "latitude": float(body["Latitude"]),
                "longitude": float(body["Longitude"]),
                "label": body.get("Label") or body.get("Address") or "",
            }
        text = str(body.get("Body") or "")
        return InboundMessage(
            external_id=str(body["MessageSid"]),
            sender=strip_whatsapp(str(body["From"])),
            sender_name=str(body.get("ProfileName") or ""),
            text=text,
            media=media,
            location=location,
            consent=_consent(text, str(body.get("OptOutType") or "")),
        )

    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        return fetch_limited(
            self._media_url(url),
            allowed_hosts=settings.TWILIO_MEDIA_HOSTS,
            auth=(self.account_sid, self.auth_token),
            max_bytes=max_bytes,
        )

    def _media_url(self, url: str) -> str:
        # Twilio's media URLs name api.twilio.com; a configured base (a local fake) stands in for it.
        return settings.TWILIO_API_BASE + url[len(TWILIO_API) :] if url.startswith(TWILIO_API) else url

    # Outbound ----------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        client = _client(self.account_sid, self.auth_token)
        params = {"from_": whatsapp_address(self.sender), "to": whatsapp_address(message.to)}
        if message.template_id:
            params["content_sid"] = message.template_id
            params["content_variables"] = json.dumps(dict(message.template_variables))
        else:
            if message.text:
                params["body"] = message.text
            if message.attachments:
                params["media_url"] = [attachment.url for attachment in message.attachments]
        if message.status_callback:
            params["status_callback"] = message.status_callback
        try:
            created = client.messages.create(**params)
        except TwilioRestException as exc:
            raise self._classify(exc, client) from None
        except (requests.ConnectionError, requests.ConnectTimeout) as exc:
            if isinstance(exc, requests.ConnectTimeout) or _never_sent(exc):
                raise TransientSendError("Twilio could not be reached; we will try again.", code="connection") from None
            raise UnknownSendError(
                "The connection to Twilio broke after the message was sent; it may or may not have been delivered.",
                code="connection_lost",
            ) from None
        except requests.ReadTimeout:
            raise UnknownSendError(
                "Twilio did not answer in time; the message may or may not have been sent.", code="timeout"
            ) from None
        return SendResult(external_id=created.sid, status=STATUS_MAP.get(created.status or "", "sent"))

    def _classify(self, exc: TwilioRestException, client: Client):
        code = exc.code or 0
        if exc.status == 429 or code == 20429:
            retry_after = _retry_after(client)
            return TransientSendError("Twilio is rate limiting this sender.", code=str(code or 429), retry_after=retry_after)
        if exc.status >= 500:
            return TransientSendError("Twilio had a temporary problem.", code=str(code or exc.status))
        if code in CONFIGURATION_CODES or exc.status == 401:
            return PermanentSendError(INVALID_CONFIGURATION, code=str(code), effect="configuration")
        effect = EFFECTS.get(code, ("", ""))[0]
        return PermanentSendError(reason_for(code, exc.msg), code=str(code or exc.status), effect=effect)


_clients = threading.local()
CLIENTS_PER_THREAD = 64


@sensitive_variables("auth_token")
def _client(account_sid: str, auth_token: str) -> Client:
    """One SDK client (and its HTTP session: kept-alive connections) per account, thread and base
    URL. A new Client per send cost a TCP (and TLS) handshake each time. Per thread because the
    client remembers its last response (Retry-After is read from it)."""
    cache = getattr(_clients, "by_key", None)
    if cache is None or len(cache) >= CLIENTS_PER_THREAD:
        cache = _clients.by_key = {}
    key = (account_sid, hashlib.sha256(auth_token.encode()).hexdigest(), settings.TWILIO_API_BASE)
    client = cache.get(key)
    if client is None:
        client = cache[key] = Client(account_sid, auth_token, http_client=BaseUrlHttpClient(settings.TWILIO_API_BASE))
    return client


def _retry_after(client: Client) -> float | None:
    response = getattr(client.http_client, "_test_only_last_response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection failed before any byte of the request could reach Twilio."""
    text = repr(exc)
    return any(marker in text for marker in ("Connection refused", "NewConnectionError", "Name or service not known", "Failed to resolve"))


def _consent(text: str, opt_out_type: str) -> str:
    if opt_out_type:
        return {"STOP": "opt_out", "START": "opt_in"}.get(opt_out_type.upper(), "")
    word = text.strip().lower()
    if word in OPT_OUT_KEYWORDS:
        return "opt_out"
    if word in OPT_IN_KEYWORDS:
        return "opt_in"
    return ""


class _MultiDict(dict):
    """What RequestValidator reads: every value of a repeated form field."""

    def getlist(self, key):
        return self[key]

