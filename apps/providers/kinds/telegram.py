"""Telegram bots through the Bot API: one channel is one bot, connected with its token.

Everything Telegram-specific lives here: the Bot API client (`{TELEGRAM_API_BASE}/bot<token>/
<method>`, files at `{base}/file/bot<token>/<path>`), connecting the bot (`getMe` validates the
token, `setWebhook` points it at the channel's webhook with a secret token of ours, `deleteWebhook`
undoes it), intake (the `X-Telegram-Bot-Api-Secret-Token` header, Updates), sending (text,
photos, documents, audio, video, inline keyboards), and the one classifier of the Bot API's
refusals.

The bot token is part of every Bot API URL, so no URL, and no exception text that could hold
one, ever leaves this module: transport failures are reported without them.

1:1 scope: private chats are conversations; group and channel posts are recorded as events and
not shown.
"""

import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from apps.providers.kinds.base import (
    BLOCKED,
    CONFIGURATION,
    MB,
    RATE_LIMITED,
    Capabilities,
    ChannelKind,
    ChannelPolicy,
    ConsentChange,
    Credential,
    Family,
    Health,
    InboundMessage,
    MediaRef,
    MessageEdit,
    OutboundAttachment,
    OutboundMessage,
    PermanentSendError,
    RawEvent,
    SendError,
    SendResult,
    SimulatedWebhook,
    TransientSendError,
    UnknownSendError,
    Webhook,
    WebhookRequest,
    signatures_equal,
)
from apps.providers.media import MediaRefused, fetch_limited

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# The updates Parley handles, asked for in setWebhook.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query", "my_chat_member")
# Inbound media is named by Telegram's file id; `fetch_media` asks getFile where it is.
TELEGRAM_FILE = "telegram-file:"
DOWNLOAD_LIMIT = 20 * MB  # the Bot API lets bots download files of up to 20 MB
CAPTION_LIMIT = 1024
CALLBACK_DATA_BYTES = 64
PART_FLOOD_WAIT_MAX = 5.0  # seconds a multi-part send waits for Telegram's flood control, once
TOKEN_PATTERN = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{30,80}$")
SECRET_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

RECONNECT = "The Telegram bot token is no longer valid. Please reconnect the bot."
TOKEN_REFUSED = "Telegram did not accept this bot token. Copy it again from @BotFather (/token)."
INVALID_TOKEN = "A Telegram bot token looks like 123456789:AAE… (from @BotFather)."
BLOCKED_REASON = "The contact blocked the bot in Telegram."

# The Bot API names a refusal by its HTTP status and its description (the docs warn that
# `error_code` may change); these are the descriptions we classify (prefix such as "Bad Request: "
# or "Forbidden: " left out), with what each means for us and the sentence a person reads.
REFUSALS = {
    "bot was blocked by the user": (BLOCKED, "the contact has blocked the bot."),
    "chat not found": ("", "this chat was not found: the contact may never have started the bot."),
    "user is deactivated": ("", "the contact's Telegram account was deleted."),
    "bot can't initiate conversation with a user": ("", "the contact has not started a chat with the bot yet."),
    "bot was kicked": ("", "the bot is no longer a member of this chat."),
    "message is too long": ("", "the message is longer than Telegram allows (4,096 characters)."),
    "message caption is too long": ("", "the caption is longer than Telegram allows (1,024 characters)."),
    "message text is empty": ("", "the message is empty."),
    "button_data_invalid": ("", "a reply button is not valid."),
    "wrong file identifier/http url specified": ("", "Telegram could not read the attachment."),
    "failed to get http url content": ("", "Telegram could not fetch the attachment."),
    "file is too big": ("", "the attachment is larger than Telegram allows."),
}
# Statuses meaning the token is wrong: the Bot API answers 401 for a revoked token and 404 for
# one it does not know at all.
CONFIGURATION_STATUSES = {401, 404}


# The Bot API ----------------------------------------------------------------------------------


class BotApiError(Exception):
    """The Bot API answered `{"ok": false, "error_code", "description", "parameters"}`."""

    def __init__(self, status: int, description: str, *, retry_after: float | None = None):
        super().__init__(f"Telegram error {status}: {description}")
        self.status = status
        self.description = description
        self.retry_after = retry_after

    @property
    def detail(self) -> str:
        """The description without its "Bad Request: " / "Forbidden: " prefix."""
        return re.sub(r"^(Bad Request|Forbidden|Unauthorized|Conflict|Too Many Requests|Not Found):\s*", "",
                      self.description).strip()


class BotApiUnreachable(Exception):
    """No answer. `maybe_delivered`: the request was sent and the answer lost (a send may have
    gone through); `timed_out`: Telegram took too long rather than the connection breaking."""

    def __init__(self, message: str, *, maybe_delivered: bool, timed_out: bool = False):
        super().__init__(message)
        self.maybe_delivered = maybe_delivered
        self.timed_out = timed_out


def api_base() -> str:
    return settings.TELEGRAM_API_BASE.rstrip("/")


TOKEN_IN_URL = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")


class TokenRedactingFilter(logging.Filter):
    """urllib3 logs its request lines (DEBUG) and retries (WARNING) with the URL, and a Bot API
    URL holds the bot's token: it leaves as `/bot<token>`, whatever the log levels."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is left to logging
            return True
        redacted = TOKEN_IN_URL.sub("/bot<token>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(existing, TokenRedactingFilter) for existing in _logger.filters):
        _logger.addFilter(TokenRedactingFilter())


# The token (and setWebhook's secret token) never shows among an error report's local variables.
@sensitive_variables("token", "url", "data")
def bot_request(token: str, method: str, *, data: dict | None = None, files: dict | None = None):
    """One Bot API call (POST, form or multipart): its `result`, or BotApiError /
    BotApiUnreachable. The URL holds the token: it never reaches an exception or a log line."""
    url = f"{api_base()}/bot{token}/{method}"
    timeout = (settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT)
    try:
        response = requests.post(url, data=data, files=files, timeout=timeout, allow_redirects=False)
    except requests.exceptions.ConnectTimeout:
        raise BotApiUnreachable("Telegram did not accept the connection in time.", maybe_delivered=False) from None
    except requests.exceptions.ReadTimeout:
        raise BotApiUnreachable("Telegram did not answer in time.", maybe_delivered=True, timed_out=True) from None
    except requests.exceptions.RequestException as exc:
        # The exception's text holds the URL, and so the token: only its type goes on.
        maybe = not isinstance(exc, requests.exceptions.ConnectionError) or _sent_before_failure(exc)
        raise BotApiUnreachable(f"Telegram could not be reached ({type(exc).__name__}).",
                                maybe_delivered=maybe) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if response.status_code >= 500:
            raise BotApiError(response.status_code, "Telegram answered without a result.")
        raise BotApiError(response.status_code or 502, "Telegram answered something that is not the Bot API.")
    if answer.get("ok") is True and "result" in answer:
        return answer["result"]
    parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
    status = answer.get("error_code") if isinstance(answer.get("error_code"), int) else response.status_code
    raise BotApiError(int(status or response.status_code), str(answer.get("description") or f"HTTP {status}"),
                      retry_after=_seconds(parameters.get("retry_after")))


def _sent_before_failure(exc: requests.exceptions.ConnectionError) -> bool:
    # A refused or unresolvable connection never sent anything; a reset mid-answer may have.
    text = repr(exc.args)
    markers = ("NewConnectionError", "Connection refused", "NameResolutionError", "Failed to resolve")
    return not any(marker in text for marker in markers)


def _seconds(value) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


# The classifier ----------------------------------------------------------------------------------


def refusal(error: BotApiError) -> SendError:
    """The one classifier of the Bot API's refusals: transient (try again later, honouring
    `parameters.retry_after`) or permanent with the sentence a person reads and its effect."""
    code = str(error.status)
    if error.status in CONFIGURATION_STATUSES:
        return PermanentSendError(RECONNECT, code=code, effect=CONFIGURATION)
    if error.status == 429:
        return TransientSendError("Telegram is rate limiting this bot; we will try again shortly.", code=code,
                                  retry_after=error.retry_after, effect=RATE_LIMITED)
    if error.status >= 500:
        return TransientSendError("Telegram had a temporary problem; we will try again.", code=code)
    detail = error.detail
    lowered = detail.lower()
    for description, (effect, sentence) in REFUSALS.items():
        if description in lowered:
            return PermanentSendError(f"Failed to send via Telegram: {sentence}", code=code, effect=effect)
    return PermanentSendError(f"Failed to send via Telegram: {detail.rstrip('.') or 'Telegram refused it'}.", code=code)


def _try_again(error: SendError) -> SendError:
    """A connect or check that did not get through: nothing retries it, the admin tries again."""
    if error.effect == RATE_LIMITED:
        sentence = "Telegram is rate limiting this bot; try again in a minute."
    elif error.code in ("connection", "timeout", "connection_lost"):
        sentence = "Telegram could not be reached; try again in a moment."
    else:
        sentence = "Telegram had a temporary problem; try again in a moment."
    return TransientSendError(sentence, code=error.code, effect=error.effect)


def unreachable(error: BotApiUnreachable) -> SendError:
    """No answer: transient when the request never left, unknown when it may have arrived."""
    if not error.maybe_delivered:
        return TransientSendError("Telegram could not be reached; we will try again.", code="connection")
    if error.timed_out:
        return UnknownSendError("Telegram did not answer in time; the message may or may not have been sent.",
                                code="timeout")
    return UnknownSendError(
        "The connection to Telegram broke after the message was sent; it may or may not have arrived.",
        code="connection_lost",
    )


# Credentials ----------------------------------------------------------------------------------


def bot_token_clean(value: str, values=None) -> str:
    value = (value or "").strip()
    if value and not TOKEN_PATTERN.match(value):
        raise ValueError(INVALID_TOKEN)
    return value


def webhook_secret_clean(value: str, values=None) -> str:
    value = (value or "").strip()
    if value and not SECRET_TOKEN_PATTERN.match(value):
        raise ValueError("1 to 256 characters: letters, digits, _ and -.")
    return value


def webhook_secret_new() -> str:
    return secrets.token_urlsafe(32)


BOT_TOKEN = Credential(
    "bot_token", "Bot token", secret=True, max_length=100, clean=bot_token_clean,
    help="From @BotFather (/newbot, or /token for an existing bot). Write-only.",
)
WEBHOOK_SECRET = Credential(
    "webhook_secret", "Webhook secret token", secret=True, required=False, max_length=256, clean=webhook_secret_clean,
    generate=webhook_secret_new, help="Telegram sends it with every update; Parley chooses it.",
)


# Updates ------------------------------------------------------------------------------------------


def _int_id(value) -> str:
    """A Telegram id (an integer, possibly negative for groups) as text; "" when it is not one."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value):
        return value
    return ""


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def message_external_id(message: dict) -> str:
    """Telegram message ids count per chat: the chat id and the message id together name one."""
    chat_id = _int_id(_dict(message.get("chat")).get("id"))
    message_id = _int_id(message.get("message_id"))
    return f"{chat_id}:{message_id}" if chat_id and message_id else ""


def _private(message: dict) -> bool:
    return _dict(message.get("chat")).get("type") == "private"


def split_update(update) -> RawEvent:
    """One Update as one event, unique by its `update_id` (per bot: the channel). Anything that
    is not a private chat's message, edit, button tap or membership change is kept as "other"."""
    if not isinstance(update, dict):
        raise ValueError("Not a Telegram update: the body must be an object.")
    update_id = update.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        raise ValueError("Not a Telegram update: update_id must be an integer.")
    kind, ref = "other", ""
    if isinstance(update.get("message"), dict) and _private(update["message"]):
        kind, ref = "message", message_external_id(update["message"])
    elif isinstance(update.get("edited_message"), dict) and _private(update["edited_message"]):
        kind, ref = "edit", message_external_id(update["edited_message"])
    elif isinstance(update.get("callback_query"), dict):
        query = update["callback_query"]
        message = _dict(query.get("message"))
        # A tap on a button of a message in a private chat (inline-mode messages have no chat).
        if not message or _private(message):
            kind = "callback"
    elif isinstance(update.get("my_chat_member"), dict) and _private(update["my_chat_member"]):
        kind = "member"
    return RawEvent(event_id=str(update_id), kind=kind, body=update, ref=ref)


def _time(value) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _sender(user: dict) -> tuple[str, dict]:
    """The name agents see and what we keep about the person (their @username)."""
    parts = (_text(user.get("first_name")).strip(), _text(user.get("last_name")).strip())
    name = " ".join(part for part in parts if part)
    username = _text(user.get("username")).strip()
    attributes = {"telegram_username": f"@{username}"} if username else {}
    return name or (f"@{username}" if username else ""), attributes


def _file(part: dict, content_type: str, filename: str = "") -> tuple[MediaRef, ...]:
    file_id = _text(part.get("file_id"))
    if not file_id:
        return ()
    return (MediaRef(url=TELEGRAM_FILE + file_id, content_type=content_type, filename=filename),)


def _largest_photo(sizes) -> dict:
    """The largest size Telegram offers of a photo (by bytes, else by pixels)."""
    sizes = sizes if isinstance(sizes, list) else []
    candidates = [size for size in sizes if isinstance(size, dict) and _text(size.get("file_id"))]
    if not candidates:
        return {}

    def area(size: dict) -> tuple:
        return _number(size.get("file_size")), _number(size.get("width")) * _number(size.get("height"))

    return max(candidates, key=area)


def _number(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def message_content(message: dict) -> tuple[str, tuple[MediaRef, ...], dict | None]:
    """(text, media, location) of a Telegram message: text or caption, the largest photo, a
    document, audio, voice, video, video note, animation, sticker, location, venue, contact;
    anything else says what it was."""
    text = _text(message.get("text")) or _text(message.get("caption"))
    media: tuple[MediaRef, ...] = ()
    location = None
    if message.get("photo"):
        media = _file(_largest_photo(message.get("photo")), "image/jpeg")
    elif isinstance(message.get("animation"), dict):
        part = message["animation"]
        media = _file(part, _text(part.get("mime_type")) or "video/mp4", _text(part.get("file_name")))
    elif isinstance(message.get("document"), dict):
        part = message["document"]
        media = _file(part, _text(part.get("mime_type")) or "application/octet-stream", _text(part.get("file_name")))
    elif isinstance(message.get("audio"), dict):
        part = message["audio"]
        media = _file(part, _text(part.get("mime_type")) or "audio/mpeg", _text(part.get("file_name")))
    elif isinstance(message.get("voice"), dict):
        part = message["voice"]
        media = _file(part, _text(part.get("mime_type")) or "audio/ogg")
    elif isinstance(message.get("video"), dict):
        part = message["video"]
        media = _file(part, _text(part.get("mime_type")) or "video/mp4", _text(part.get("file_name")))
    elif isinstance(message.get("video_note"), dict):
        media = _file(message["video_note"], "video/mp4")
    elif isinstance(message.get("sticker"), dict):
        part = message["sticker"]
        if part.get("is_animated"):
            content_type = "application/x-tgsticker"
        elif part.get("is_video"):
            content_type = "video/webm"
        else:
            content_type = "image/webp"
        media = _file(part, content_type)
        # The sticker's emoji tells the agent (and the list) what it says.
        text = text or _text(part.get("emoji")) or "Sticker"
    if isinstance(message.get("location"), dict):
        venue = _dict(message.get("venue"))
        point = message["location"]
        try:
            location = {
                "latitude": float(point["latitude"]),
                "longitude": float(point["longitude"]),
                "label": ", ".join(p for p in (_text(venue.get("title")), _text(venue.get("address"))) if p),
            }
        except (KeyError, TypeError, ValueError):
            text = text or "[location]"
    if isinstance(message.get("contact"), dict):
        card = message["contact"]
        name = " ".join(p for p in (_text(card.get("first_name")), _text(card.get("last_name"))) if p)
        text = f"Shared contact: {' '.join(p for p in (name, _text(card.get('phone_number'))) if p) or 'a contact'}"
    if not text and not media and location is None:
        if isinstance(message.get("poll"), dict):
            text = f"Poll: {_text(message['poll'].get('question'))}".strip()
        elif isinstance(message.get("dice"), dict):
            text = f"{_text(message['dice'].get('emoji')) or '🎲'} {message['dice'].get('value', '')}".strip()
        else:
            known = next((key for key in message if key not in ("message_id", "from", "chat", "date", "entities")), "")
            text = f"[{known or 'unsupported'} message]"
    return text, media, location


def _start_payload(text: str) -> str | None:
    """The payload of `/start <payload>` (a deep link t.me/<bot>?start=<payload>), "" for a
    plain /start, None for any other text."""
    match = re.fullmatch(r"/start(?:@\w+)?(?:\s+(.*))?", text.strip(), flags=re.DOTALL)
    return None if match is None else (match.group(1) or "").strip()


def _button_label(query: dict) -> str:
    """The words on the button the customer tapped: found in the message's keyboard by its
    callback data, else the data itself (we put the label there)."""
    data = _text(query.get("data"))
    keyboard = _dict(_dict(query.get("message")).get("reply_markup")).get("inline_keyboard")
    for row in keyboard if isinstance(keyboard, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data and _text(button.get("text")):
                return button["text"]
    return data or "[button]"


def callback_data(label: str) -> str:
    """A button's callback data: its label, cut to the Bot API's 64 bytes."""
    data = label.encode()[:CALLBACK_DATA_BYTES]
    return data.decode(errors="ignore")


# The adapter ----------------------------------------------------------------------------------


SEND_METHODS = {  # content type or major type -> (Bot API method, the file's field)
    "image/gif": ("sendAnimation", "animation"),
    "image": ("sendPhoto", "photo"),
    "audio/ogg": ("sendVoice", "voice"),
    "audio": ("sendAudio", "audio"),
    "video": ("sendVideo", "video"),
}


class TelegramAdapter:
    @sensitive_variables("secrets")
    def __init__(self, *, config: dict, secrets: dict, channel_uuid: str = "", **_):
        self.config = config or {}
        self.token = str((secrets or {}).get("bot_token") or "").strip()
        self.webhook_secret = str((secrets or {}).get("webhook_secret") or "").strip()
        self.channel_uuid = channel_uuid

    def missing_configuration(self) -> list[str]:
        fields = {"bot token": self.token, "webhook secret": self.webhook_secret}
        return [name for name, value in fields.items() if not value]

    # Calls ------------------------------------------------------------------------------------

    def _call(self, method: str, *, data: dict | None = None, files: dict | None = None):
        try:
            return bot_request(self.token, method, data=data, files=files)
        except BotApiUnreachable as error:
            raise unreachable(error) from None
        except BotApiError as error:
            raise refusal(error) from None

    # Connecting ---------------------------------------------------------------------------------

    def _me(self) -> dict:
        try:
            me = bot_request(self.token, "getMe")
        except BotApiUnreachable as error:
            raise unreachable(error) from None
        except BotApiError as error:
            if error.status in CONFIGURATION_STATUSES:
                raise PermanentSendError(TOKEN_REFUSED, code=str(error.status), effect=CONFIGURATION) from None
            raise refusal(error) from None
        if not isinstance(me, dict) or not me.get("is_bot"):
            raise PermanentSendError(TOKEN_REFUSED, code="not_a_bot", effect=CONFIGURATION)
        return me

    def connect(self, *, webhook_urls) -> dict:
        """getMe (the token is a bot's), then setWebhook: the channel's inbound URL, our secret
        token and the updates we handle. Returns the bot's id, username and name to keep."""
        try:
            me = self._me()
        except (TransientSendError, UnknownSendError) as error:
            raise _try_again(error) from None
        url = webhook_urls.get("inbound", "")
        try:
            bot_request(self.token, "setWebhook", data={
                "url": url,
                "secret_token": self.webhook_secret,
                "allowed_updates": json.dumps(list(ALLOWED_UPDATES)),
            })
        except BotApiUnreachable as error:
            raise _try_again(unreachable(error)) from None
        except BotApiError as error:
            if error.status in CONFIGURATION_STATUSES:
                raise refusal(error) from None
            if error.status == 429 or error.status >= 500:
                raise _try_again(refusal(error)) from None
            raise PermanentSendError(
                f"Telegram refused to call {url}: {error.detail.rstrip('.')}. Telegram calls only public HTTPS "
                "addresses on ports 443, 80, 88 or 8443 (PUBLIC_BASE_URL).",
                code=str(error.status),
            ) from None
        return {"bot_id": str(me.get("id") or ""), "bot_username": _text(me.get("username")),
                "bot_name": _text(me.get("first_name"))}

    def disconnect(self) -> None:
        """deleteWebhook: the bot stops calling us (its pending updates wait for the next one)."""
        try:
            self._call("deleteWebhook")
        except (TransientSendError, UnknownSendError) as error:
            raise _try_again(error) from None

    def check(self) -> Health:
        """getMe and getWebhookInfo: the bot's name, where its webhook points, what is waiting and
        Telegram's last delivery error."""
        try:
            me = self._me()
            info = self._call("getWebhookInfo")
        except (TransientSendError, UnknownSendError) as error:
            return Health(ok=False, summary=_try_again(error).reason)
        except SendError as error:
            return Health(ok=False, summary=error.reason)
        info = info if isinstance(info, dict) else {}
        bot = f"{_text(me.get('first_name')) or 'The bot'} (@{_text(me.get('username'))})"
        url = _text(info.get("url"))
        pending = info.get("pending_update_count") if isinstance(info.get("pending_update_count"), int) else 0
        details = [f"Bot: {bot}", f"Webhook: {url or 'not set'}", f"Updates waiting: {pending}"]
        error_at = _time(info.get("last_error_date"))
        error_message = _text(info.get("last_error_message"))
        if error_at is not None:
            details.append(f"Last delivery error ({error_at:%Y-%m-%d %H:%M} UTC): {error_message or 'unknown'}")
        if url != self._webhook_url():
            return Health(ok=False, details=tuple(details), summary=(
                f"{bot} is reachable, but its webhook does not point to this channel. Save the bot token "
                "again to reconnect it."))
        if error_at is not None and pending:
            return Health(ok=False, details=tuple(details), summary=(
                f"Telegram cannot deliver updates to {bot}: {error_message or 'unknown error'}."))
        return Health(ok=True, summary=f"Connected to {bot}.", details=tuple(details))

    def _webhook_url(self) -> str:
        return settings.PUBLIC_BASE_URL + WEBHOOK.path.format(uuid=self.channel_uuid)

    # Inbound ----------------------------------------------------------------------------------

    def verify_signature(self, request: WebhookRequest) -> bool:
        received = request.headers.get(SECRET_HEADER, "")
        return bool(self.webhook_secret and received) and signatures_equal(self.webhook_secret, received)

    def split_webhook(self, request: WebhookRequest, *, kind: str) -> list[RawEvent]:
        try:
            update = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            raise ValueError("Not a Telegram update: the body is not JSON.") from None
        return [split_update(update)]

    def normalize(self, event_kind: str, body: dict):
        if event_kind == "message":
            return self._message(_dict(body.get("message")))
        if event_kind == "edit":
            message = _dict(body.get("edited_message"))
            text, _, _ = message_content(message)
            external_id = message_external_id(message)
            if not external_id:
                return None
            return MessageEdit(external_id=external_id, sender=_int_id(_dict(message.get("chat")).get("id")),
                               text=text, edited_at=_time(message.get("edit_date")) or _time(message.get("date")))
        if event_kind == "callback":
            return self._button_tap(_dict(body.get("callback_query")))
        if event_kind == "member":
            member = _dict(body.get("my_chat_member"))
            status = _text(_dict(member.get("new_chat_member")).get("status"))
            sender = _int_id(_dict(member.get("chat")).get("id"))
            if not sender:
                return None
            if status == "kicked":
                return ConsentChange(sender=sender, change="block", reason=BLOCKED_REASON)
            if status == "member":
                return ConsentChange(sender=sender, change="unblock")
        return None

    def _message(self, message: dict) -> InboundMessage | None:
        external_id = message_external_id(message)
        if not external_id:
            return None
        name, attributes = _sender(_dict(message.get("from")))
        text, media, location = message_content(message)
        payload = _start_payload(_text(message.get("text")))
        if payload:
            # The deep link they came through (t.me/<bot>?start=<payload>), kept on the contact.
            attributes = {**attributes, "telegram_deep_link": payload}
        return InboundMessage(
            external_id=external_id, sender=_int_id(_dict(message.get("chat")).get("id")), sender_name=name,
            text=text, media=media, location=location, sent_at=_time(message.get("date")),
            contact_attributes=attributes,
        )

    def _button_tap(self, query: dict) -> InboundMessage | None:
        """The customer tapped a reply button: their reply, in the button's words."""
        user = _dict(query.get("from"))
        sender = _int_id(_dict(_dict(query.get("message")).get("chat")).get("id")) or _int_id(user.get("id"))
        query_id = _text(query.get("id"))
        if not sender or not query_id:
            return None
        name, attributes = _sender(user)
        return InboundMessage(external_id=f"callback:{query_id}", sender=sender, sender_name=name,
                              text=_button_label(query), contact_attributes=attributes)

    def acknowledge(self, event_kind: str, body: dict) -> None:
        """answerCallbackQuery: the spinner on the tapped button stops."""
        if event_kind != "callback":
            return
        query_id = _text(_dict(body.get("callback_query")).get("id"))
        if query_id:
            self._call("answerCallbackQuery", data={"callback_query_id": query_id})

    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        """getFile, then the file from `{base}/file/bot<token>/<file_path>`, within the Bot API's
        20 MB (and our own limit)."""
        if not url.startswith(TELEGRAM_FILE):
            raise MediaRefused("Not a Telegram file id.")
        limit = min(max_bytes, DOWNLOAD_LIMIT)
        try:
            info = bot_request(self.token, "getFile", data={"file_id": url[len(TELEGRAM_FILE):]})
        except BotApiError as error:
            raise MediaRefused(f"Telegram getFile refused: {error.description}") from None
        except BotApiUnreachable as error:
            raise MediaRefused(f"Telegram getFile failed: {error}") from None
        info = info if isinstance(info, dict) else {}
        path = _text(info.get("file_path"))
        size = info.get("file_size")
        if not path:
            raise MediaRefused("Telegram gave no path for the file.")
        if isinstance(size, int) and size > limit:
            raise MediaRefused(f"Media too large: {size} bytes (limit {limit})")
        return self._download(path, limit)

    @sensitive_variables("file_url")
    def _download(self, path: str, limit: int) -> tuple[bytes, str]:
        file_url = f"{api_base()}/file/bot{self.token}/{quote(path, safe='/')}"
        try:
            return fetch_limited(file_url, allowed_hosts=[urlsplit(api_base()).hostname or ""], max_bytes=limit)
        except requests.RequestException as exc:
            # Its text holds the URL, and so the token.
            raise MediaRefused(f"Telegram file download failed ({type(exc).__name__})") from None

    # Outbound ---------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            raise PermanentSendError("Failed to send via Telegram: this contact has no chat with the bot.",
                                     code="no_address")
        if message.template_id:
            raise PermanentSendError("Failed to send via Telegram: templates are a WhatsApp feature.", code="template")
        markup = {"reply_markup": json.dumps({"inline_keyboard": [
            [{"text": label, "callback_data": callback_data(label)}] for label in message.buttons
        ]})} if message.buttons else {}
        # One message per attachment; the text rides as the caption of the last when it fits,
        # else goes last on its own. The buttons go under the last message.
        caption = message.text if message.attachments and len(message.text) <= CAPTION_LIMIT else ""
        parts: list[tuple[str, dict, dict | None]] = []
        for index, attachment in enumerate(message.attachments):
            last = index == len(message.attachments) - 1
            parts.append(self._attachment_part(message.to, attachment, caption=caption if last else ""))
        if message.text and not caption:
            parts.append(("sendMessage", {"chat_id": message.to, "text": message.text}, None))
        if not parts:
            raise PermanentSendError("Failed to send via Telegram: nothing to send.", code="no_content")
        method, data, files = parts[-1]
        parts[-1] = (method, {**data, **markup}, files)
        sent: list[str] = []
        for method, data, files in parts:
            try:
                result = self._send_part(method, data, files, waiting=bool(sent))
            except SendError as exc:
                if sent:
                    # Part of it reached the customer: never resend blindly.
                    raise UnknownSendError(f"Only part of the message was sent via Telegram ({exc.reason}).",
                                           code="partial") from None
                raise
            sent.append(message_external_id(_dict(result)))
        return SendResult(external_id=sent[-1], status="sent")

    def _send_part(self, method: str, data: dict, files: dict | None, *, waiting: bool):
        """One part of a message. After the first, a short flood wait (Telegram paces messages to
        one chat) is waited out once: retrying the whole message later would repeat what went."""
        try:
            return self._call(method, data=data, files=files)
        except TransientSendError as exc:
            wait = exc.retry_after
            if not waiting or exc.effect != RATE_LIMITED or wait is None or wait > PART_FLOOD_WAIT_MAX:
                raise
        time.sleep(wait)
        return self._call(method, data=data, files=files)

    @staticmethod
    def _attachment_part(chat_id: str, attachment: OutboundAttachment, *, caption: str):
        content_type = attachment.content_type
        method, field = SEND_METHODS.get(content_type) or SEND_METHODS.get(content_type.split("/")[0]) or (
            "sendDocument", "document")
        data = {"chat_id": chat_id, **({"caption": caption} if caption else {})}
        if attachment.read is None:
            # By URL Telegram takes photos up to 5 MB and other files up to 20 MB.
            return method, {**data, field: attachment.url}, None
        # Uploaded: photos up to 10 MB, other files up to 50 MB (the policy's limits).
        return method, data, {field: (attachment.filename, attachment.read(), content_type)}

    def typing(self, *, to: str) -> bool:
        """sendChatAction "typing": Telegram shows it for about 5 seconds."""
        self._call("sendChatAction", data={"chat_id": to, "action": "typing"})
        return True


# Simulating Telegram --------------------------------------------------------------------------


def simulate_inbound(channel, *, sender: str, name: str, text: str, media_url: str = "") -> SimulatedWebhook:
    """The Update Telegram posts for a private text message from chat `sender`, with the
    channel's secret token."""
    secret = (channel.secrets or {}).get("webhook_secret", "")
    if not secret:
        raise ValueError("This channel has no webhook secret: connect the bot first.")
    chat_id = sender.lstrip("+")
    if not re.fullmatch(r"\d{1,20}", chat_id):
        raise ValueError("A Telegram sender is a chat id (digits).")
    if media_url:
        raise ValueError("Telegram media comes by file id through getFile; it cannot be simulated from a URL.")
    first, _, last = (name or "Telegram user").partition(" ")
    person = {"id": int(chat_id), "is_bot": False, "first_name": first, **({"last_name": last} if last else {})}
    update = {
        "update_id": secrets.randbelow(2**31),
        "message": {
            "message_id": secrets.randbelow(2**31),
            "from": person,
            "chat": {**person, "type": "private"},
            "date": int(time.time()),
            "text": text,
        },
    }
    update["message"]["chat"].pop("is_bot")
    return SimulatedWebhook(WEBHOOK.path.format(uuid=channel.uuid), json.dumps(update).encode(), "application/json",
                            {SECRET_HEADER: secret})


# The kind -------------------------------------------------------------------------------------

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

DOCUMENT_TYPES = frozenset({
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/zip",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
})

WEBHOOK = Webhook(hook="telegram", name="inbound", event_kind="update")

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
        # Uploaded files (multipart): photos up to 10 MB, everything else up to 50 MB.
        media={
            "image": (frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}), 10 * MB),
            "audio": (frozenset({"audio/mpeg", "audio/ogg", "audio/mp4"}), 50 * MB),
            "video": (frozenset({"video/mp4"}), 50 * MB),
            "document": (DOCUMENT_TYPES, 50 * MB),
        },
        max_buttons=6,
        button_text_limit=64,
    ),
    adapter=TelegramAdapter,
    webhooks=(WEBHOOK,),
    credentials=(BOT_TOKEN, WEBHOOK_SECRET),
    capabilities=Capabilities(typing=True),
    reconnect_reason=RECONNECT,
    simulate=simulate_inbound,
)
