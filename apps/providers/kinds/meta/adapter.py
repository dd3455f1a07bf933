"""Meta channels through one Meta app: Facebook Messenger, Instagram DM and the WhatsApp Cloud API.

One app-level webhook (`/webhooks/meta/`) carries all three. `signature_valid` checks
`X-Hub-Signature-256` once for the whole POST; `split_payload` turns a body into events, each
with the kind and provider id of the channel it belongs to (page id, Instagram account id,
phone number id). The adapters then normalize a stored event and talk to the Graph API.

Every Graph error is classified here, once (`classify`): sends, failed WhatsApp statuses and the
connect flow all read it.

HTTP only, no ORM: the app secret and Graph version reach the adapters through the catalog.
"""

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from apps.providers.kinds.base import (
    CONFIGURATION,
    RATE_LIMITED,
    WINDOW_CLOSED,
    InboundMessage,
    MediaRef,
    OutboundMessage,
    PermanentSendError,
    RawEvent,
    Reaction,
    SendError,
    SendResult,
    StatusUpdate,
    TransientSendError,
    UnknownSendError,
    Unsend,
    Watermark,
    WebhookRequest,
    signatures_equal,
)
from apps.providers.kinds.meta import graph as meta_graph
from apps.providers.kinds.meta.graph import GraphError, GraphUnreachable
from apps.providers.media import MediaRefused, fetch_limited

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
# WhatsApp Cloud names media by id; `fetch_media` asks the Graph API for the download URL.
WHATSAPP_MEDIA = "whatsapp-media:"

# Graph error codes (https://developers.facebook.com/docs/graph-api/guides/error-handling,
# https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
TOKEN_CODES = {190, 102, 463, 467}  # expired / invalid session or token
PERMISSION_CODES = {10, 3, 100001}  # a permission is missing (and 200-299)
RATE_LIMIT_CODES = {4, 17, 32, 613, 80001, 80002, 80003, 80004, 80005, 80006, 80007, 80008, 80014, 130429, 131048,
                    131056}
TRANSIENT_CODES = {1, 2, 131000, 131016, 133004}
# "Sent outside of the allowed window": Messenger reports it as (#10) with one of these subcodes,
# so the window is checked before permissions.
WINDOW_SUBCODES = {2018278, 2018065, 2018108, 2534022}
WINDOW_CODES = {131047}  # WhatsApp: more than 24 hours since the customer last wrote
UNAVAILABLE_CODES = {551, 1545041, 131026, 131049}
UNAVAILABLE_SUBCODES = {2018001, 2018007, 1545041, 2534014}
WHATSAPP_CONFIGURATION = {133010, 131031, 131030, 368, 131045}

WHATSAPP_STATUS = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}
MESSENGER_ATTACHMENT_HINT = {
    "image": "image/jpeg",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "file": "application/octet-stream",
}
SEND_ATTACHMENT_TYPE = {"image": "image", "video": "video", "audio": "audio"}
# Meta's reaction names, for the rare payload without the emoji itself.
REACTION_EMOJI = {
    "love": "❤️", "like": "👍", "haha": "😆", "wow": "😮", "sad": "😢", "angry": "😡", "smile": "😊",
}


def media_hosts() -> list[str]:
    return list(settings.META_MEDIA_HOSTS)


def sign(app_secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` header Meta sends for `body`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


@sensitive_variables("app_secret")
def signature_valid(app_secret: str, body: bytes, header: str) -> bool:
    """HMAC-SHA256 of the raw body with the app secret, compared in constant time."""
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    return signatures_equal(sign(app_secret, body), header.strip())


def _time(milliseconds_or_seconds) -> datetime | None:
    """Meta timestamps: milliseconds (Messenger, Instagram) or seconds as a string (WhatsApp)."""
    try:
        value = float(milliseconds_or_seconds)
    except (TypeError, ValueError):
        return None
    if value > 1e11:
        value /= 1000.0
    return datetime.fromtimestamp(value, tz=UTC)


# Webhook splitting ------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutedEvent:
    """An event and where it goes: the channel kind and its provider id (Channel.address)."""

    channel_kind: str
    destination: str
    event: RawEvent


OBJECT_KINDS = {"page": "messenger", "instagram": "instagram", "whatsapp_business_account": "meta_whatsapp"}


def split_payload(payload) -> list[RoutedEvent]:
    """Every messaging item, change message and status of a (batched) Meta webhook body.
    Raises ValueError for a body that is not a Meta webhook."""
    if not isinstance(payload, dict) or payload.get("object") not in OBJECT_KINDS:
        raise ValueError("Not a Meta webhook: unknown or missing 'object'.")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise ValueError("Not a Meta webhook: 'entry' must be a list.")
    kind = OBJECT_KINDS[payload["object"]]
    routed: list[RoutedEvent] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError("Not a Meta webhook: every entry must be an object.")
        if kind == "meta_whatsapp":
            routed.extend(_split_whatsapp(entry))
        else:
            routed.extend(_split_messaging(kind, entry))
    return routed


def _split_messaging(kind: str, entry: dict) -> list[RoutedEvent]:
    account_id = str(entry.get("id") or "")
    items = entry.get("messaging")
    if items is None:
        # Instagram may deliver messaging webhooks as `changes` (field "messages"); same shape.
        items = [c.get("value") for c in entry.get("changes") or [] if isinstance(c, dict)
                 and c.get("field") in ("messages", "message_reactions", "messaging_seen", "message_edit")]
    routed = []
    for item in items or []:
        if not isinstance(item, dict):
            raise ValueError("Not a Meta webhook: messaging items must be objects.")
        sender = str((item.get("sender") or {}).get("id") or "")
        recipient = str((item.get("recipient") or {}).get("id") or "")
        destination = account_id or recipient
        event = _messaging_event(item, sender=sender, recipient=recipient, account_id=destination)
        routed.append(RoutedEvent(kind, destination, event))
    return routed


def _messaging_event(item: dict, *, sender: str, recipient: str, account_id: str) -> RawEvent:
    body = {"account_id": account_id, "messaging": item}
    timestamp = str(item.get("timestamp") or "")
    message = item.get("message")
    if isinstance(message, dict):
        mid = str(message.get("mid") or "")
        if not mid:
            raise ValueError("A Meta message needs a 'mid'.")
        if message.get("is_deleted"):
            return RawEvent(event_id=f"{mid}:deleted", kind="unsend", body=body, ref=mid)
        if message.get("is_echo"):
            return RawEvent(event_id=mid, kind="echo", body=body, ref=mid)
        return RawEvent(event_id=mid, kind="message", body=body, ref=mid)
    if isinstance(item.get("postback"), dict):
        postback = item["postback"]
        mid = str(postback.get("mid") or f"postback:{sender}:{timestamp}")
        return RawEvent(event_id=mid, kind="message", body=body, ref=mid)
    if isinstance(item.get("reaction"), dict):
        reaction = item["reaction"]
        mid = str(reaction.get("mid") or "")
        action = str(reaction.get("action") or "react")
        emoji = str(reaction.get("emoji") or reaction.get("reaction") or "")
        # The timestamp tells a second "react" after an "unreact" apart from Meta's retry.
        return RawEvent(event_id=f"{mid}:{action}:{emoji}:{sender}:{timestamp}", kind="reaction", body=body, ref=mid)
    for field_name in ("delivery", "read"):
        receipt = item.get(field_name)
        if isinstance(receipt, dict):
            mark = str(receipt.get("watermark") or receipt.get("mid") or timestamp)
            return RawEvent(event_id=f"{field_name}:{sender}:{mark}", kind="watermark", body=body)
    # Opt-ins, referrals, handovers...: stored (nothing is dropped), nothing to show.
    other = next((key for key in item if key not in ("sender", "recipient", "timestamp")), "other")
    return RawEvent(event_id=f"{other}:{sender}:{timestamp}", kind="other", body=body)


def _split_whatsapp(entry: dict) -> list[RoutedEvent]:
    routed = []
    for change in entry.get("changes") or []:
        if not isinstance(change, dict):
            raise ValueError("Not a Meta webhook: changes must be objects.")
        value = change.get("value") or {}
        if not isinstance(value, dict):
            raise ValueError("Not a Meta webhook: a change value must be an object.")
        metadata = value.get("metadata") or {}
        phone_number_id = str(metadata.get("phone_number_id") or "")
        common = {"waba_id": str(entry.get("id") or ""), "metadata": metadata}
        contacts = {str(c.get("wa_id")): c for c in value.get("contacts") or [] if isinstance(c, dict)}
        for message in value.get("messages") or []:
            if not isinstance(message, dict) or not message.get("id"):
                raise ValueError("A WhatsApp message needs an 'id'.")
            body = {**common, "message": message, "contact": contacts.get(str(message.get("from")), {})}
            kind = "reaction" if message.get("type") == "reaction" else "message"
            wamid = str(message["id"])
            ref = str((message.get("reaction") or {}).get("message_id") or wamid) if kind == "reaction" else wamid
            routed.append(RoutedEvent("meta_whatsapp", phone_number_id, RawEvent(wamid, kind, body, ref=ref)))
        for status in value.get("statuses") or []:
            if not isinstance(status, dict) or not status.get("id") or not status.get("status"):
                raise ValueError("A WhatsApp status needs 'id' and 'status'.")
            body = {**common, "status": status}
            event_id = f"{status['id']}:{status['status']}"
            routed.append(
                RoutedEvent("meta_whatsapp", phone_number_id, RawEvent(event_id, "status", body, ref=str(status["id"])))
            )
    return routed


# Graph errors -----------------------------------------------------------------------------


def unreachable(error: GraphUnreachable) -> SendError:
    """No answer from Graph: transient when the request never left, unknown when it may have."""
    if not error.maybe_delivered:
        return TransientSendError("Meta could not be reached; we will try again.", code="connection")
    if error.timed_out:
        return UnknownSendError("Meta did not answer in time; the message may or may not have been sent.", code="timeout")
    return UnknownSendError(
        "The connection to Meta broke after the request was sent; it may or may not have arrived.",
        code="connection_lost",
    )


def reconnect_sentence(kind: str) -> str:
    if kind == "meta_whatsapp":
        return (
            "Failed to send via WhatsApp: the WhatsApp Cloud access token has expired or lacks a permission. "
            "An admin must update it in Settings → Integrations."
        )
    return (
        "Failed to send via {label}: the Facebook Page connection has expired or lost a permission. "
        "An admin must reconnect the page in Settings → Integrations."
    ).format(label="Instagram" if kind == "instagram" else "Messenger")


def classify(error: GraphError, *, kind: str, tag: str = "") -> SendError:
    """A Graph error as our send error: transient (retry with backoff), or permanent with the
    reason a person reads and what it means for us (`effect`)."""
    label = {"messenger": "Messenger", "instagram": "Instagram"}.get(kind, "WhatsApp")
    code, subcode = error.code, error.subcode
    code_text = str(code or error.status)
    if error.status == 429 or code in RATE_LIMIT_CODES:
        return TransientSendError(
            f"{label} is rate limiting this account; we will try again shortly.", code=code_text,
            retry_after=error.retry_after, effect=RATE_LIMITED,
        )
    if error.status >= 500 or code in TRANSIENT_CODES or error.flagged_transient:
        return TransientSendError(f"{label} had a temporary problem; we will try again.", code=code_text)
    if subcode in WINDOW_SUBCODES or code in WINDOW_CODES:
        if kind == "meta_whatsapp":
            reason = "Failed to send via WhatsApp: the 24-hour window is closed; WhatsApp requires a template message."
        elif tag:
            reason = f"Failed to send via {label}: the 7-day window for human agent replies has closed."
        else:
            reason = f"Failed to send via {label}: the 24-hour window for replies has closed."
        return PermanentSendError(reason, code=code_text, effect=WINDOW_CLOSED)
    if code in UNAVAILABLE_CODES or subcode in UNAVAILABLE_SUBCODES:
        return PermanentSendError(f"Failed to send via {label}: this person isn't available right now.", code=code_text)
    if code in TOKEN_CODES or code in PERMISSION_CODES or 200 <= code <= 299 or error.status == 401 or (
        kind == "meta_whatsapp" and code in WHATSAPP_CONFIGURATION
    ):
        return PermanentSendError(reconnect_sentence(kind), code=code_text, effect=CONFIGURATION)
    detail = error.message or f"{label} refused the message"
    return PermanentSendError(f"Failed to send via {label}: {detail.rstrip('.')}.", code=code_text)


def _bearer(token: str):
    @sensitive_variables("token")
    def add_header(request):
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    return add_header


# Adapters ---------------------------------------------------------------------------------


class _MetaAdapter:
    """What the three Meta adapters share: the app (secret, version), signature, media."""

    kind = ""  # which Meta product this adapter speaks ("messenger", "instagram", "meta_whatsapp")

    @sensitive_variables("secrets", "app")
    def __init__(self, *, config: dict, secrets: dict, channel_uuid: str = "", app: dict | None = None, **_):
        app = app or {}
        self.config = config or {}
        self.app_id = str(app.get("app_id") or "")
        self.app_secret = str(app.get("app_secret") or "")
        self.version = str(app.get("graph_version") or meta_graph.DEFAULT_VERSION)
        self.token = ""

    # Inbound -----------------------------------------------------------------------------

    def verify_signature(self, request: WebhookRequest) -> bool:
        return signature_valid(self.app_secret, request.body, request.headers.get(SIGNATURE_HEADER, ""))

    def split_webhook(self, request: WebhookRequest, *, kind: str) -> list[RawEvent]:
        try:
            payload = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            raise ValueError("Not a Meta webhook: the body is not JSON.") from None
        return [routed.event for routed in split_payload(payload) if routed.channel_kind == self.kind]

    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        return fetch_limited(url, allowed_hosts=media_hosts(), max_bytes=max_bytes)

    # Outbound helpers -------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json=None, params=None, tag: str = "") -> dict:
        try:
            return meta_graph.graph_request(method, path, token=self.token, version=self.version, json=json,
                                            params=params)
        except GraphUnreachable as error:
            raise unreachable(error) from None
        except GraphError as error:
            if error.status < 400 and not error.code:
                return {}  # Meta took the request and answered no JSON: it went out, without an id.
            raise classify(error, kind=self.kind, tag=tag) from None

    def profile(self, user_id: str) -> dict:
        """{"name", "avatar_url"} of a customer (Messenger / Instagram), or raises SendError."""
        return {}

    def mark_read(self, *, to: str, external_id: str = "") -> bool:
        return False

    def typing(self, *, to: str) -> bool:
        return False


class _PageMessagingAdapter(_MetaAdapter):
    """Messenger and Instagram: the Send API of the connected Facebook Page."""

    label = ""
    profile_fields = ""

    @sensitive_variables("kwargs", "secrets")
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        secrets = kwargs.get("secrets") or {}
        self.token = str(secrets.get("page_access_token") or "").strip()
        self.page_id = str(self.config.get("page_id") or "").strip()

    def missing_configuration(self) -> list[str]:
        fields = {"Facebook Page": self.page_id, "page access token": self.token}
        return [name for name, value in fields.items() if not value]

    def normalize(self, event_kind: str, body: dict):
        item = body.get("messaging") or {}
        sender = str((item.get("sender") or {}).get("id") or "")
        recipient = str((item.get("recipient") or {}).get("id") or "")
        at = _time(item.get("timestamp"))
        if event_kind == "watermark":
            receipt_kind = "delivery" if "delivery" in item else "read"
            receipt = item.get(receipt_kind) or {}
            return Watermark(
                kind=receipt_kind,
                sender=sender,
                watermark=_time(receipt.get("watermark")),
                external_id=str(receipt.get("mid") or ""),
            )
        if event_kind == "reaction":
            reaction = item.get("reaction") or {}
            action = str(reaction.get("action") or "react")
            emoji = str(reaction.get("emoji") or REACTION_EMOJI.get(str(reaction.get("reaction") or ""), ""))
            return Reaction(external_id=str(reaction.get("mid") or ""), sender=sender, emoji=emoji, action=action)
        if event_kind == "unsend":
            return Unsend(external_id=str(item["message"]["mid"]), sender=sender)
        if event_kind == "echo":
            message = item.get("message") or {}
            text, media = _messaging_content(message)
            return InboundMessage(
                external_id=str(message["mid"]), sender=recipient, text=text, media=media, echo=True,
                app_id=str(message.get("app_id") or ""), sent_at=at,
            )
        if event_kind != "message":
            return None
        if isinstance(item.get("postback"), dict):
            postback = item["postback"]
            external_id = str(postback.get("mid") or f"postback:{sender}:{item.get('timestamp') or ''}")
            return InboundMessage(
                external_id=external_id, sender=sender, text=str(postback.get("title") or postback.get("payload") or ""),
                sent_at=at,
            )
        message = item.get("message") or {}
        text, media = _messaging_content(message)
        return InboundMessage(external_id=str(message["mid"]), sender=sender, text=text, media=media, sent_at=at)

    def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            raise PermanentSendError(
                f"Failed to send via {self.label}: this contact has no {self.label} conversation with the page.",
                code="no_address",
            )
        if message.template_id:
            raise PermanentSendError(f"Failed to send via {self.label}: templates are a WhatsApp feature.", code="template")
        envelope = {"recipient": {"id": message.to}}
        if message.tag:
            envelope.update(messaging_type="MESSAGE_TAG", tag=message.tag)
        else:
            envelope["messaging_type"] = "RESPONSE"
        # The Send API takes one attachment per message: each goes on its own, the text last.
        parts = [
            {
                "attachment": {
                    "type": SEND_ATTACHMENT_TYPE.get(attachment.content_type.split("/")[0], "file"),
                    "payload": {"url": attachment.url, "is_reusable": True},
                }
            }
            for attachment in message.attachments
        ]
        if message.text:
            parts.append({"text": message.text})
        if not parts:
            raise PermanentSendError(f"Failed to send via {self.label}: nothing to send.", code="no_content")
        sent_ids: list[str] = []
        for part in parts:
            try:
                data = self._call("POST", f"{self.page_id or 'me'}/messages", json={**envelope, "message": part}, tag=message.tag)
            except SendError as exc:
                if sent_ids:
                    # Part of it reached the customer: never resend blindly.
                    raise UnknownSendError(
                        f"Only part of the message was sent via {self.label} ({exc.reason}).", code="partial"
                    ) from None
                raise
            sent_ids.append(str(data.get("message_id") or ""))
        return SendResult(external_id=sent_ids[-1], status="sent")

    def _sender_action(self, to: str, action: str) -> bool:
        self._call("POST", f"{self.page_id or 'me'}/messages", json={"recipient": {"id": to}, "sender_action": action})
        return True

    def mark_read(self, *, to: str, external_id: str = "") -> bool:
        return self._sender_action(to, "mark_seen")

    def typing(self, *, to: str) -> bool:
        return self._sender_action(to, "typing_on")

    def profile(self, user_id: str) -> dict:
        data = self._call("GET", user_id, params={"fields": self.profile_fields})
        name = data.get("name") or " ".join(p for p in (data.get("first_name"), data.get("last_name")) if p)
        if not name and data.get("username"):
            name = f"@{data['username']}"
        return {"name": str(name or ""), "avatar_url": str(data.get("profile_pic") or "")}


class MessengerAdapter(_PageMessagingAdapter):
    kind = "messenger"
    label = "Messenger"
    profile_fields = "first_name,last_name,profile_pic"


class InstagramAdapter(_PageMessagingAdapter):
    kind = "instagram"
    label = "Instagram"
    profile_fields = "name,username,profile_pic"

    def missing_configuration(self) -> list[str]:
        missing = super().missing_configuration()
        if not (self.config.get("instagram_account_id") or ""):
            missing.append("Instagram account")
        return missing


def _messaging_content(message: dict) -> tuple[str, tuple[MediaRef, ...]]:
    """Text and media of a Messenger / Instagram message, with story replies, mentions, shares and
    quick replies made readable."""
    text = str(message.get("text") or "")
    notes: list[str] = []
    media: list[MediaRef] = []
    story = (message.get("reply_to") or {}).get("story") if isinstance(message.get("reply_to"), dict) else None
    if isinstance(story, dict) and story.get("url"):
        notes.append(f"↩ Replied to your story: {story['url']}")
    for attachment in message.get("attachments") or []:
        if not isinstance(attachment, dict):
            continue
        kind = str(attachment.get("type") or "")
        payload = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
        url = str(payload.get("url") or "")
        if kind in MESSENGER_ATTACHMENT_HINT and url:
            media.append(MediaRef(url=url, content_type=MESSENGER_ATTACHMENT_HINT[kind]))
        elif kind == "story_mention":
            notes.append(f"Mentioned you in their story: {url}" if url else "Mentioned you in their story.")
        elif kind == "location":
            coordinates = payload.get("coordinates") or {}
            notes.append(f"📍 {coordinates.get('lat')}, {coordinates.get('long')}")
        elif url:
            # Shares, reels, fallbacks: a link the agent can open.
            notes.append(f"{attachment.get('title') or 'Shared'}: {url}")
    if not text and isinstance(message.get("quick_reply"), dict):
        text = str(message["quick_reply"].get("payload") or "")
    text = "\n\n".join(part for part in [text, *notes] if part)
    return text, tuple(media)


class WhatsAppCloudAdapter(_MetaAdapter):
    kind = "meta_whatsapp"

    @sensitive_variables("kwargs", "secrets")
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        secrets = kwargs.get("secrets") or {}
        self.token = str(secrets.get("access_token") or "").strip()
        self.phone_number_id = str(self.config.get("phone_number_id") or "").strip()

    def missing_configuration(self) -> list[str]:
        fields = {"phone number id": self.phone_number_id, "access token": self.token}
        return [name for name, value in fields.items() if not value]

    def normalize(self, event_kind: str, body: dict):
        if event_kind == "status":
            status = body.get("status") or {}
            mapped = WHATSAPP_STATUS.get(str(status.get("status") or ""))
            if mapped is None:
                return None
            code, reason, effect = "", "", ""
            errors = status.get("errors") or []
            if mapped == "failed" and errors and isinstance(errors[0], dict):
                error = errors[0]
                code = str(error.get("code") or "")
                detail = (error.get("error_data") or {}).get("details") or error.get("message") or error.get("title")
                refusal = classify(GraphError(str(detail or ""), code=int(code) if code.isdigit() else 0, status=400),
                                   kind=self.kind)
                reason, effect = refusal.reason, refusal.effect
            return StatusUpdate(external_id=str(status["id"]), status=mapped, error_code=code, error_reason=reason,
                                effect=effect)
        message = body.get("message") or {}
        sender = "+" + str(message.get("from") or "").lstrip("+")
        name = str(((body.get("contact") or {}).get("profile") or {}).get("name") or "")
        at = _time(message.get("timestamp"))
        kind = str(message.get("type") or "")
        if event_kind == "reaction":
            reaction = message.get("reaction") or {}
            emoji = str(reaction.get("emoji") or "")
            return Reaction(external_id=str(reaction.get("message_id") or ""), sender=sender, emoji=emoji,
                            action="react" if emoji else "unreact")
        text, media, location = "", (), None
        if kind == "text":
            text = str((message.get("text") or {}).get("body") or "")
        elif kind in ("image", "video", "audio", "document", "sticker"):
            part = message.get(kind) or {}
            text = str(part.get("caption") or "")
            if part.get("id"):
                media = (MediaRef(url=WHATSAPP_MEDIA + str(part["id"]), content_type=str(part.get("mime_type") or "")),)
        elif kind == "location":
            part = message.get("location") or {}
            try:
                location = {
                    "latitude": float(part["latitude"]),
                    "longitude": float(part["longitude"]),
                    "label": str(part.get("name") or part.get("address") or ""),
                }
            except (KeyError, TypeError, ValueError):
                text = "[location]"
        elif kind == "interactive":
            part = message.get("interactive") or {}
            reply = part.get("button_reply") or part.get("list_reply") or part.get("nfm_reply") or {}
            text = str(reply.get("title") or reply.get("body") or reply.get("id") or "")
        elif kind == "button":
            part = message.get("button") or {}
            text = str(part.get("text") or part.get("payload") or "")
        elif kind == "contacts":
            people = []
            for card in message.get("contacts") or []:
                phones = ", ".join(str(p.get("phone") or "") for p in card.get("phones") or [])
                people.append(f"{(card.get('name') or {}).get('formatted_name') or 'Contact'} {phones}".strip())
            text = "Shared contact: " + "; ".join(people) if people else "Shared a contact."
        else:
            text = f"[{kind or 'unsupported'} message]"
        return InboundMessage(
            external_id=str(message["id"]), sender=sender, sender_name=name, text=text, media=media,
            location=location, sent_at=at,
        )

    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        if url.startswith(WHATSAPP_MEDIA):
            try:
                info = meta_graph.graph_request("GET", url[len(WHATSAPP_MEDIA):], token=self.token,
                                                version=self.version)
            except (GraphError, GraphUnreachable) as exc:
                raise MediaRefused(f"WhatsApp media lookup failed: {type(exc).__name__}") from None
            url = str(info.get("url") or "")
            # The media URL needs the token too; fetch_limited drops it on any redirect.
            return fetch_limited(url, allowed_hosts=media_hosts(), auth=_bearer(self.token), max_bytes=max_bytes)
        return fetch_limited(url, allowed_hosts=media_hosts(), max_bytes=max_bytes)

    def send(self, message: OutboundMessage) -> SendResult:
        to = message.to.lstrip("+").removeprefix("whatsapp:").lstrip("+")
        if not to:
            raise PermanentSendError("Failed to send via WhatsApp: the contact has no phone number.", code="no_address")
        base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        if message.template_id:
            variables = dict(message.template_variables)
            parameters = [{"type": "text", "text": str(variables[key])} for key in sorted(variables, key=_order)]
            template = {"name": message.template_id, "language": {"code": message.template_language or "en"}}
            if parameters:
                template["components"] = [{"type": "body", "parameters": parameters}]
            parts = [{**base, "type": "template", "template": template}]
        else:
            parts = []
            for index, attachment in enumerate(message.attachments):
                category = attachment.content_type.split("/")[0]
                media_type = category if category in ("image", "video", "audio") else "document"
                media = {"link": attachment.url}
                if media_type == "document":
                    media["filename"] = attachment.filename
                # The text rides as the caption of the last image / video / document.
                last = index == len(message.attachments) - 1
                if last and message.text and media_type != "audio":
                    media["caption"] = message.text
                parts.append({**base, "type": media_type, media_type: media})
            captioned = any("caption" in part.get(part["type"], {}) for part in parts)
            if message.text and not captioned:
                parts.append({**base, "type": "text", "text": {"preview_url": False, "body": message.text}})
        if not parts:
            raise PermanentSendError("Failed to send via WhatsApp: nothing to send.", code="no_content")
        sent_ids: list[str] = []
        for part in parts:
            try:
                data = self._call("POST", f"{self.phone_number_id}/messages", json=part)
            except SendError as exc:
                if sent_ids:
                    raise UnknownSendError(f"Only part of the message was sent via WhatsApp ({exc.reason}).", code="partial") from None
                raise
            messages = data.get("messages") or [{}]
            sent_ids.append(str(messages[0].get("id") or ""))
        return SendResult(external_id=sent_ids[-1], status="sent")

    def mark_read(self, *, to: str, external_id: str = "") -> bool:
        if not external_id:
            return False
        self._call(
            "POST", f"{self.phone_number_id}/messages",
            json={"messaging_product": "whatsapp", "status": "read", "message_id": external_id},
        )
        return True


def _order(key: str):
    return (0, int(key)) if str(key).isdigit() else (1, str(key))
