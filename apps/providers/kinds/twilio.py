"""Twilio Programmable Messaging with the organization's own account: WhatsApp (and SMS, whose
adapter is still to come).

Everything Twilio-specific lives here: the SDK client pointed at TWILIO_API_BASE, webhook
signatures (X-Twilio-Signature over the public URL and the sorted form parameters), the status
names, the consent keywords, and the one classifier of Twilio's error codes (for refused sends
and for failed status callbacks alike).
"""

import hashlib
import json
import logging
import mimetypes
import secrets
import threading
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.debug import sensitive_variables
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from apps.core.errors import ServiceError
from apps.core.phones import phone_normalize
from apps.providers.kinds import whatsapp
from apps.providers.kinds.base import (
    BLOCKED,
    CONFIGURATION,
    OPT_OUT,
    WINDOW_CLOSED,
    Capabilities,
    ChannelKind,
    ChannelPolicy,
    Credential,
    Family,
    InboundMessage,
    MediaRef,
    OutboundMessage,
    PermanentSendError,
    RawEvent,
    SendResult,
    SimulatedWebhook,
    StatusUpdate,
    TransientSendError,
    UnknownSendError,
    Webhook,
    WebhookRequest,
)
from apps.providers.media import fetch_limited

log = logging.getLogger(__name__)

INVALID_CONFIGURATION = "Invalid WhatsApp configuration for your organization. Please contact admin."
INVALID_ACCOUNT_SID = "A Twilio account SID starts with AC and has 34 characters."
TWILIO_API = "https://api.twilio.com"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Codes meaning the account, token or sender is wrong: the channel goes into error.
CONFIGURATION_CODES = {20003, 20404, 21212, 21606, 63007, 20008}
# What a refusal means for the contact or conversation, and how we say it.
REFUSALS = {
    21610: (OPT_OUT, "the contact has unsubscribed from your messages (they replied STOP)."),
    63016: (WINDOW_CLOSED, "the 24-hour window is closed; WhatsApp requires a template message."),
    63024: ("", "the recipient is not a valid WhatsApp user."),
    63003: ("", "the recipient's phone number is not on WhatsApp."),
    21211: ("", "the contact's phone number is not valid."),
    21614: ("", "the contact's phone number cannot receive messages."),
    21408: ("", "sending to this country is not enabled on your Twilio account."),
    63018: ("", "the sender is sending too fast for WhatsApp; try again in a moment."),
    30007: ("", "the message was filtered as spam by the carrier."),
    63032: (BLOCKED, "the contact has blocked this WhatsApp sender."),
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


def refusal(code: int | None, message: str) -> tuple[str, str]:
    """(effect, the sentence a person reads) for a Twilio error code: the one classifier, for a
    refused send and for a failed status callback."""
    if code in CONFIGURATION_CODES:
        return CONFIGURATION, INVALID_CONFIGURATION
    effect, detail = REFUSALS.get(code or 0, ("", message or "Twilio refused the message."))
    return effect, f"Failed to send via WhatsApp: {detail}"


# Credentials ----------------------------------------------------------------------------------


def account_sid_clean(value: str, values=None) -> str:
    """A Twilio account SID, or ValueError with the sentence to show."""
    value = (value or "").strip()
    if value and not (value.startswith("AC") and len(value) == 34 and value[2:].isalnum()):
        raise ValueError(INVALID_ACCOUNT_SID)
    return value


def sender_clean(value: str, *, whatsapp: bool) -> str:
    """"whatsapp:+E164" for WhatsApp senders (the prefix is added when missing), E.164 otherwise."""
    value = (value or "").strip()
    if not value:
        return ""
    try:
        number = phone_normalize(value)
    except ServiceError as exc:
        raise ValueError(exc.message) from None
    return f"whatsapp:{number}" if whatsapp or value.startswith("whatsapp:") else number


ACCOUNT_SID = Credential("account_sid", "Account SID", help="Twilio account SID (AC…).", max_length=64,
                         clean=account_sid_clean)
AUTH_TOKEN = Credential("auth_token", "Auth token", secret=True, help="From the Twilio console. Write-only.")


# The SDK client -------------------------------------------------------------------------------


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


# The adapter ----------------------------------------------------------------------------------


class TwilioWhatsAppAdapter:
    @sensitive_variables("secrets")
    def __init__(self, *, config: dict, secrets: dict, channel_uuid: str = "", **_):
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
            effect, reason = refusal(int(code), str(body.get("ErrorMessage") or "")) if code.isdigit() else ("", "")
            return StatusUpdate(
                external_id=body["MessageSid"], status=status, error_code=code, error_reason=reason,
                effect=effect if status == "failed" else "",
            )
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
        if exc.status == 401:
            return PermanentSendError(INVALID_CONFIGURATION, code=str(code), effect=CONFIGURATION)
        effect, reason = refusal(code, exc.msg)
        return PermanentSendError(reason, code=str(code or exc.status), effect=effect)


# Simulating Twilio ----------------------------------------------------------------------------


def simulate_inbound(channel, *, sender: str, name: str, text: str, media_url: str = "") -> SimulatedWebhook:
    """The form Twilio posts for an inbound WhatsApp message, signed with the channel's token."""
    token = (channel.secrets or {}).get("auth_token", "")
    if not token:
        raise ValueError("This channel has no auth token: Twilio signatures cannot be made.")
    sid = ("MM" if media_url else "SM") + secrets.token_hex(16)
    params = {
        "SmsMessageSid": sid,
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": channel.config.get("account_sid", ""),
        "From": whatsapp_address(sender),
        "To": whatsapp_address(channel.config.get("sender", "")),
        "WaId": sender.lstrip("+"),
        "ProfileName": name,
        "Body": text,
        "NumMedia": "1" if media_url else "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "MessageType": "text",
        "ApiVersion": "2010-04-01",
    }
    if media_url:
        content_type = mimetypes.guess_type(media_url)[0] or "image/jpeg"
        params.update(MediaUrl0=media_url, MediaContentType0=content_type, MessageType=content_type.split("/")[0])
    path = f"/webhooks/twilio/{channel.uuid}/"
    signature = RequestValidator(token).compute_signature(settings.PUBLIC_BASE_URL + path, params)
    return SimulatedWebhook(path, urlencode(params).encode(), "application/x-www-form-urlencoded",
                            {"X-Twilio-Signature": signature})


# The kinds ------------------------------------------------------------------------------------


def _twiml() -> HttpResponse:
    # Twilio expects TwiML for a message webhook; an empty one sends no auto-reply.
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def _no_content() -> HttpResponse:
    return HttpResponse(status=204)


WEBHOOKS = (
    Webhook(hook="twilio", name="inbound", event_kind="message", answer=_twiml),
    Webhook(hook="twilio", name="status", event_kind="status", sub="status", answer=_no_content),
)

WHATSAPP = ChannelKind(
    key="twilio_whatsapp",
    label="WhatsApp (Twilio)",
    family=whatsapp.FAMILY,
    provider="twilio",
    policy=whatsapp.POLICY,
    adapter=TwilioWhatsAppAdapter,
    webhooks=WEBHOOKS,
    credentials=(
        ACCOUNT_SID,
        Credential(
            "sender", "Sender", max_length=40, help='The Twilio WhatsApp-enabled number, e.g. "whatsapp:+14155238886".',
            clean=lambda value, values: sender_clean(value, whatsapp=True),
        ),
        AUTH_TOKEN,
    ),
    capabilities=Capabilities(templates=True),
    status_callback="status",
    simulate=simulate_inbound,
)

SMS_FAMILY = Family(
    key="sms",
    label="SMS",
    order=40,
    icon="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-5 4V5a2 2 0 0 1 2-2Zm3 6v2h2V9H7Zm4 0v2h2V9h-2Zm4 0v2h2V9h-2Z",
)

# SMS through the same Twilio account: its policy is known; its adapter is still to come (the
# channels issue), so such a channel is stored but never sends and has no webhook.
SMS = ChannelKind(
    key="twilio_sms",
    label="SMS (Twilio)",
    family=SMS_FAMILY,
    provider="twilio",
    policy=ChannelPolicy(
        label="SMS", identity_kind="phone", needs_phone=True, needs_opt_in=False, reply_window=None, text_limit=1600
    ),
    adapter=None,
)
