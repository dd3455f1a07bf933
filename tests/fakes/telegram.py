"""A fake Telegram Bot API over real HTTP on 127.0.0.1.

Standard library only for the server, like the other fakes; the app's real ``requests`` calls
reach it through ``settings.TELEGRAM_API_BASE``.  It answers the way the Bot API documents
(https://core.telegram.org/bots/api#making-requests)::

    {"ok": true, "result": ...}
    {"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}
    {"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7",
     "parameters": {"retry_after": 7}}

Usage::

    fake = FakeTelegram().start()                 # or: with FakeTelegram() as fake:
    bot = fake.add_bot("123456:AA...", username="acme_bot", first_name="Acme Support")
    fake.add_chat(bot.token, 5550001, first_name="Ana")   # a person who started the bot
    file_id = fake.add_file(bot.token, b"...", "photos/file_1.jpg")
    fake.webhook(bot.token)                       # what setWebhook stored (url, secret_token, ...)
    fake.deliver(bot.token, update)               # POST an Update to the webhook, like Telegram
    fake.sent                                     # every accepted send* call (method, params, result)
    fake.requests                                 # every request (RecordedRequest)
    fake.stop()

Requests
--------
``/bot<token>/<method>`` by GET or POST, parameters in the query string, a form, a JSON body or
``multipart/form-data`` (uploads).  Method names are case-insensitive.  A token that is not
shaped like one, or an unknown method: 404 "Not Found".  A well-shaped token the fake does not
know (or one revoked with :meth:`FakeTelegram.revoke`): 401 "Unauthorized".
``/file/bot<token>/<file_path>`` downloads a file registered with :meth:`add_file` (wrong token
or path: 404).

Methods: ``getMe``, ``setWebhook`` (``url`` must be HTTPS on port 443, 80, 88 or 8443 unless
``fake.allow_http_webhooks``; ``secret_token`` 1-256 of ``A-Za-z0-9_-``; ``allowed_updates`` a
JSON list), ``deleteWebhook``, ``getWebhookInfo`` (with the last delivery error, see
:meth:`set_delivery_error`), ``sendMessage`` (``text`` 1-4096 characters), ``sendPhoto``,
``sendDocument``, ``sendAudio``, ``sendVideo``, ``sendAnimation``, ``sendVoice`` (a file by
upload, URL or file id; ``caption`` <= 1024; uploads: photos <= 10 MB, other files <= 50 MB),
``sendChatAction``, ``answerCallbackQuery`` (a query id issued by :meth:`callback_update`, once),
``getFile`` (files over 20 MB: "file is too big").  Sends check ``reply_markup`` (an inline
keyboard: rows of buttons with ``text`` and exactly one action; ``callback_data`` 1-64 bytes), that
the chat started the bot (else 400 "chat not found") and has not blocked it (:meth:`block`: 403
"bot was blocked by the user").

Scripted answers
----------------
``fake.script(*answers, method=None)`` queues answers for the next calls of one method (or any).
``ErrorAnswer(status, description, retry_after=None)``, ``Hang(seconds, release)``, ``Drop()``;
factories: ``too_many_requests(retry_after)``, ``server_error()``, ``unauthorized()``.
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http import FakeHandler, Headers

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024
PHOTO_UPLOAD_LIMIT = 10 * 1024 * 1024
UPLOAD_LIMIT = 50 * 1024 * 1024
TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
WEBHOOK_PORTS = {443, 80, 88, 8443}
CHAT_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
                "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note"}
UPDATE_TYPES = {"message", "edited_message", "channel_post", "edited_channel_post", "business_connection",
                "business_message", "edited_business_message", "deleted_business_messages", "message_reaction",
                "message_reaction_count", "inline_query", "chosen_inline_result", "callback_query", "shipping_query",
                "pre_checkout_query", "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_member",
                "chat_join_request", "chat_boost", "removed_chat_boost"}
SEND_FILES = {"sendphoto": "photo", "senddocument": "document", "sendaudio": "audio", "sendvideo": "video",
              "sendanimation": "animation", "sendvoice": "voice"}
BUTTON_ACTIONS = {"url", "callback_data", "web_app", "login_url", "switch_inline_query",
                  "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
                  "callback_game", "pay"}


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    description: str
    retry_after: int | None = None


@dataclass(frozen=True)
class Hang:
    """Hold the answer for ``seconds`` (or until released); the call takes effect first."""

    seconds: float = 30.0
    release: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer; ``taken=True``: the call takes effect first."""

    taken: bool = False


def too_many_requests(retry_after: int = 7) -> ErrorAnswer:
    return ErrorAnswer(429, f"Too Many Requests: retry after {retry_after}", retry_after)


def server_error() -> ErrorAnswer:
    return ErrorAnswer(502, "Bad Gateway")


def unauthorized() -> ErrorAnswer:
    return ErrorAnswer(401, "Unauthorized")


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    method: str  # HTTP method
    path: str
    api_method: str  # the Bot API method ("sendMessage"), "" for file downloads
    token: str
    params: dict  # every parameter, whatever the encoding (uploads: {"filename", "content_type", "content"})
    headers: Headers
    body: bytes = b""


@dataclass
class Bot:
    token: str
    id: int
    username: str
    first_name: str
    revoked: bool = False
    webhook: dict = field(default_factory=dict)
    chats: dict = field(default_factory=dict)  # chat id -> {"first_name", ...}
    blocked: set = field(default_factory=set)
    next_message_id: dict = field(default_factory=dict)
    callback_queries: set = field(default_factory=set)
    answered: list = field(default_factory=list)
    delivery_error: tuple | None = None  # (unix time, message)
    pending: int = 0


@dataclass
class _File:
    token: str  # file ids belong to one bot
    content: bytes
    path: str
    size: int
    expired: bool = False  # getFile still answers; the download link no longer works


class _Answer:
    def __init__(self, status: int, body: bytes, content_type: str = "application/json"):
        self.status, self.body, self.content_type = status, body, content_type

    @classmethod
    def ok(cls, result, description: str | None = None) -> "_Answer":
        payload = {"ok": True, "result": result}
        if description:
            payload["description"] = description
        return cls(200, json.dumps(payload).encode())

    @classmethod
    def error(cls, status: int, description: str, retry_after: int | None = None) -> "_Answer":
        payload = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            payload["parameters"] = {"retry_after": retry_after}
        return cls(status, json.dumps(payload).encode())


def _bad(description: str) -> _Answer:
    return _Answer.error(400, f"Bad Request: {description}")


NOT_FOUND = ("Not Found", 404)
_DROP = object()


# --------------------------------------------------------------------------- Updates (documented shapes)


def user(chat_id: int, first_name: str = "Ana", last_name: str | None = None, username: str | None = None) -> dict:
    person = {"id": chat_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
    if last_name:
        person["last_name"] = last_name
    if username:
        person["username"] = username
    return person


def private_chat(person: dict) -> dict:
    chat = {"id": person["id"], "type": "private", "first_name": person["first_name"]}
    for key in ("last_name", "username"):
        if key in person:
            chat[key] = person[key]
    return chat


_update_ids = iter(range(800_000_000, 900_000_000))


def next_update_id() -> int:
    return next(_update_ids)


def message(person: dict, message_id: int, *, chat: dict | None = None, date: int | None = None, **content) -> dict:
    """A Message from ``person`` (in their private chat unless ``chat``) with ``content``
    (text=..., photo=[...], document={...}, ...)."""
    return {"message_id": message_id, "from": person, "chat": chat or private_chat(person),
            "date": date or int(time.time()), **content}


def update(update_id: int | None = None, **fields) -> dict:
    return {"update_id": update_id or next_update_id(), **fields}


# --------------------------------------------------------------------------- server


class FakeTelegram:
    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self.sent: list[dict] = []  # accepted sends: {"method", "chat_id", "params", "result"}
        self.base_url = ""
        self.allow_http_webhooks = False
        self._lock = threading.RLock()
        self._bots: dict[str, Bot] = {}
        self._files: dict[str, _File] = {}  # file_id -> file
        self._scripts: collections.deque = collections.deque()
        self._scripts_by_method: dict[str, collections.deque] = {}
        self._stopping = threading.Event()
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "FakeTelegram":
        if self._server is not None:
            return self

        class Handler(_Handler):
            pass

        Handler.fake = self
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._stopping.clear()
        self._server = server
        host, port = server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="FakeTelegram", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeTelegram":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()
            self.allow_http_webhooks = False
            self._bots.clear()
            self._files.clear()
            self._scripts.clear()
            self._scripts_by_method.clear()

    # ------------------------------------------------------------------ setup

    def add_bot(self, token: str, *, username: str = "acme_support_bot", first_name: str = "Acme Support") -> Bot:
        bot = Bot(token=token, id=int(token.split(":", 1)[0]), username=username, first_name=first_name)
        with self._lock:
            self._bots[token] = bot
        return bot

    def bot(self, token: str) -> Bot:
        with self._lock:
            return self._bots[token]

    def add_chat(self, token: str, chat_id: int, **person) -> dict:
        """A person who started the bot: the bot may write to them."""
        with self._lock:
            self._bots[token].chats[chat_id] = user(chat_id, **person)
        return self._bots[token].chats[chat_id]

    def block(self, token: str, chat_id: int) -> None:
        with self._lock:
            self._bots[token].blocked.add(chat_id)

    def revoke(self, token: str) -> None:
        """The token stops working (@BotFather /revoke): 401 from now on."""
        with self._lock:
            self._bots[token].revoked = True

    def add_file(self, token: str, content: bytes, file_path: str, *, size: int | None = None,
                 file_id: str | None = None) -> str:
        """A file the bot may download (getFile, then /file/bot<token>/<file_path>); returns its
        file_id (``file_id`` as given: the one an Update names). ``size`` overrides what getFile
        reports (a file too big to download)."""
        file_id = file_id or "AgAC" + secrets.token_urlsafe(24)
        with self._lock:
            self._files[file_id] = _File(token, bytes(content), file_path, len(content) if size is None else size)
        return file_id

    def expire_file(self, file_id: str) -> None:
        """The file's download link stops working (Telegram keeps one valid for about an hour)."""
        with self._lock:
            self._files[file_id].expired = True

    def webhook(self, token: str) -> dict:
        with self._lock:
            return dict(self._bots[token].webhook)

    def set_delivery_error(self, token: str, message: str, *, pending: int = 1, at: int | None = None) -> None:
        """What getWebhookInfo reports after Telegram failed to deliver to the webhook."""
        with self._lock:
            bot = self._bots[token]
            bot.delivery_error, bot.pending = (at or int(time.time()), message), pending

    def callback_update(self, token: str, person: dict, on_message: dict, data: str) -> dict:
        """An Update for a tap on an inline button of ``on_message`` (a Message the bot sent);
        its query id is one ``answerCallbackQuery`` accepts, once."""
        query_id = str(secrets.randbelow(10**18))
        with self._lock:
            self._bots[token].callback_queries.add(query_id)
        query = {"id": query_id, "from": person, "message": on_message, "chat_instance": str(secrets.randbelow(10**18)),
                 "data": data}
        return update(callback_query=query)

    def answered(self, token: str) -> list[str]:
        with self._lock:
            return list(self._bots[token].answered)

    def script(self, *answers, method: str | None = None) -> None:
        for answer in answers:
            if not isinstance(answer, ErrorAnswer | Hang | Drop):
                raise TypeError(f"not a scripted answer: {answer!r}")
        with self._lock:
            if method is None:
                self._scripts.extend(answers)
            else:
                self._scripts_by_method.setdefault(method.lower(), collections.deque()).extend(answers)

    def release_hangs(self) -> None:
        with self._lock:
            old, self._release = self._release, threading.Event()
        old.set()

    def calls(self, api_method: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.api_method.lower() == api_method.lower()]

    # ------------------------------------------------------------------ delivering updates

    def deliver(self, token: str, body: dict | bytes, *, secret: str | None = None) -> int:
        """POST an Update to the bot's webhook over HTTP, as Telegram does (with the secret token
        header when one was set, or ``secret`` as given). Returns the HTTP status."""
        import requests

        hook = self.webhook(token)
        if not hook.get("url"):
            raise AssertionError("The bot has no webhook set.")
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        token_header = hook.get("secret_token") if secret is None else secret
        if token_header:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token_header
        return requests.post(hook["url"], data=raw, headers=headers, timeout=10, allow_redirects=False).status_code

    # ------------------------------------------------------------------ handling

    def _next_script(self, method: str):
        with self._lock:
            queue = self._scripts_by_method.get(method)
            if queue:
                return queue.popleft()
            if self._scripts:
                return self._scripts.popleft()
        return None

    def _handle(self, req: RecordedRequest):
        if not req.api_method:
            return self._download(req)
        method = req.api_method.lower()
        if not TOKEN_RE.match(req.token):
            return _Answer.error(404, "Not Found")
        with self._lock:
            bot = self._bots.get(req.token)
        if bot is None or bot.revoked:
            return _Answer.error(401, "Unauthorized")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None and method in SEND_FILES:
            handler = lambda b, r: self._send_file(b, r, SEND_FILES[method])  # noqa: E731
        if handler is None:
            return _Answer.error(404, "Not Found")
        scripted = self._next_script(method)
        if isinstance(scripted, ErrorAnswer):
            return _Answer.error(scripted.status, scripted.description, scripted.retry_after)
        if isinstance(scripted, Drop):
            if scripted.taken:
                handler(bot, req)
            return _DROP
        if isinstance(scripted, Hang):
            return ("hang", scripted, handler(bot, req))
        return handler(bot, req)

    def _download(self, req: RecordedRequest):
        with self._lock:
            bot = self._bots.get(req.token)
            found = next((f for f in self._files.values() if f.path == req.params.get("file_path")
                          and f.token == req.token and not f.expired), None)
        if bot is None or bot.revoked or found is None:
            return _Answer(404, b"Not Found", "text/plain")
        return _Answer(200, found.content, "application/octet-stream")

    # --- bot and webhook

    def _me(self, bot: Bot) -> dict:
        return {"id": bot.id, "is_bot": True, "first_name": bot.first_name, "username": bot.username,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
                "can_connect_to_business": False, "has_main_web_app": False}

    def _m_getme(self, bot: Bot, req: RecordedRequest) -> _Answer:
        return _Answer.ok(self._me(bot))

    def _m_setwebhook(self, bot: Bot, req: RecordedRequest) -> _Answer:
        url = _str(req.params.get("url"))
        if not url:
            with self._lock:
                bot.webhook = {}
            return _Answer.ok(True, "Webhook was deleted")
        parts = urlsplit(url)
        if not self.allow_http_webhooks:
            if parts.scheme != "https":
                return _bad("bad webhook: An HTTPS URL must be provided for webhook")
            if (parts.port or 443) not in WEBHOOK_PORTS:
                return _bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        elif parts.scheme not in ("http", "https") or not parts.hostname:
            return _bad("bad webhook: Failed to resolve host: Name or service not known")
        secret = req.params.get("secret_token")
        if secret is not None and not SECRET_RE.match(_str(secret)):
            return _bad("bad webhook: secret token contains unallowed characters")
        allowed = req.params.get("allowed_updates")
        if allowed is not None:
            try:
                allowed = json.loads(allowed) if isinstance(allowed, str) else allowed
            except ValueError:
                return _bad("can't parse allowed updates")
            if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
                return _bad("can't parse allowed updates")
            allowed = [a for a in allowed if a in UPDATE_TYPES]
        with self._lock:
            already = bot.webhook.get("url") == url
            bot.webhook = {"url": url, "secret_token": _str(secret) if secret is not None else "",
                           "allowed_updates": allowed, "max_connections": int(req.params.get("max_connections") or 40)}
        return _Answer.ok(True, "Webhook is already set" if already else "Webhook was set")

    def _m_deletewebhook(self, bot: Bot, req: RecordedRequest) -> _Answer:
        with self._lock:
            had = bool(bot.webhook)
            bot.webhook = {}
        return _Answer.ok(True, "Webhook was deleted" if had else "Webhook is already deleted")

    def _m_getwebhookinfo(self, bot: Bot, req: RecordedRequest) -> _Answer:
        with self._lock:
            hook, error, pending = dict(bot.webhook), bot.delivery_error, bot.pending
        info = {"url": hook.get("url", ""), "has_custom_certificate": False, "pending_update_count": pending}
        if hook:
            info.update(max_connections=hook["max_connections"], ip_address="149.154.167.220")
            if hook.get("allowed_updates") is not None:
                info["allowed_updates"] = hook["allowed_updates"]
        if error is not None:
            info.update(last_error_date=error[0], last_error_message=error[1])
        return _Answer.ok(info)

    # --- sending

    def _chat(self, bot: Bot, req: RecordedRequest):
        raw = _str(req.params.get("chat_id"))
        if not raw:
            return _bad("chat_id is empty")
        try:
            chat_id = int(raw)
        except ValueError:
            return _bad("chat not found")
        with self._lock:
            person = bot.chats.get(chat_id)
            blocked = chat_id in bot.blocked
        if person is None:
            return _bad("chat not found")
        if blocked:
            return _Answer.error(403, "Forbidden: bot was blocked by the user")
        return person

    def _markup(self, req: RecordedRequest):
        raw = req.params.get("reply_markup")
        if raw is None:
            return None
        try:
            markup = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return _bad("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            return _bad("can't parse inline keyboard button: InlineKeyboardMarkup must be an Array of Arrays")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str) or not button["text"]:
                    return _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
                actions = [key for key in button if key in BUTTON_ACTIONS]
                if len(actions) != 1:
                    return _bad("can't parse inline keyboard button: exactly one of the optional fields must be used")
                data = button.get("callback_data")
                if data is not None and not (isinstance(data, str) and 1 <= len(data.encode()) <= 64):
                    return _bad("BUTTON_DATA_INVALID")
        return markup

    def _record_sent(self, bot: Bot, req: RecordedRequest, person: dict, content: dict, markup) -> _Answer:
        with self._lock:
            chat_id = person["id"]
            message_id = bot.next_message_id.get(chat_id, 100) + 1
            bot.next_message_id[chat_id] = message_id
            result = {"message_id": message_id, "from": {"id": bot.id, "is_bot": True, "first_name": bot.first_name,
                                                         "username": bot.username},
                      "chat": private_chat(person), "date": int(time.time()), **content}
            if markup is not None:
                result["reply_markup"] = markup
            params = {k: v for k, v in req.params.items()}
            self.sent.append({"method": req.api_method, "chat_id": chat_id, "params": params, "result": result})
        return _Answer.ok(result)

    def _m_sendmessage(self, bot: Bot, req: RecordedRequest) -> _Answer:
        person = self._chat(bot, req)
        if isinstance(person, _Answer):
            return person
        text = _str(req.params.get("text"))
        if not text.strip():
            return _bad("message text is empty")
        if len(text) > TEXT_LIMIT:
            return _bad("message is too long")
        markup = self._markup(req)
        if isinstance(markup, _Answer):
            return markup
        return self._record_sent(bot, req, person, {"text": text}, markup)

    def _send_file(self, bot: Bot, req: RecordedRequest, field_name: str) -> _Answer:
        person = self._chat(bot, req)
        if isinstance(person, _Answer):
            return person
        given = req.params.get(field_name)
        if not given:
            return _bad(f"there is no {field_name} in the request")
        caption = _str(req.params.get("caption"))
        if len(caption) > CAPTION_LIMIT:
            return _bad("message caption is too long")
        if isinstance(given, dict):  # an upload
            limit = PHOTO_UPLOAD_LIMIT if field_name == "photo" else UPLOAD_LIMIT
            if len(given["content"]) > limit:
                return _Answer.error(413, "Request Entity Too Large")
            if not given["content"]:
                return _bad("file must be non-empty")
            size, name, mime = len(given["content"]), given["filename"], given["content_type"]
        elif given.startswith(("http://", "https://")):
            size, name, mime = 0, given.rsplit("/", 1)[-1], "application/octet-stream"
        elif given in self._files:
            size, name, mime = self._files[given].size, "", "application/octet-stream"
        else:
            return _bad("wrong file identifier/HTTP URL specified")
        markup = self._markup(req)
        if isinstance(markup, _Answer):
            return markup
        file_id, unique = "BQAC" + secrets.token_urlsafe(20), secrets.token_urlsafe(8)
        if field_name == "photo":
            content = {"photo": [{"file_id": file_id, "file_unique_id": unique, "width": 90, "height": 90,
                                  "file_size": max(1, size // 10)},
                                 {"file_id": file_id + "x", "file_unique_id": unique + "x", "width": 800, "height": 800,
                                  "file_size": size}]}
        else:
            content = {field_name: {"file_id": file_id, "file_unique_id": unique, "file_size": size,
                                    **({"file_name": name} if name and field_name != "voice" else {}),
                                    "mime_type": mime}}
        if caption:
            content["caption"] = caption
        return self._record_sent(bot, req, person, content, markup)

    def _m_sendchataction(self, bot: Bot, req: RecordedRequest) -> _Answer:
        person = self._chat(bot, req)
        if isinstance(person, _Answer):
            return person
        if _str(req.params.get("action")) not in CHAT_ACTIONS:
            return _bad("wrong parameter action in request")
        return _Answer.ok(True)

    def _m_answercallbackquery(self, bot: Bot, req: RecordedRequest) -> _Answer:
        query_id = _str(req.params.get("callback_query_id"))
        with self._lock:
            if query_id not in bot.callback_queries:
                return _bad("query is too old and response timeout expired or query ID is invalid")
            bot.callback_queries.discard(query_id)
            bot.answered.append(query_id)
        return _Answer.ok(True)

    def _m_getfile(self, bot: Bot, req: RecordedRequest) -> _Answer:
        file_id = _str(req.params.get("file_id"))
        with self._lock:
            found = self._files.get(file_id)
        if found is None or found.token != bot.token:
            return _bad("invalid file_id")
        if found.size > DOWNLOAD_LIMIT:
            return _bad("file is too big")
        return _Answer.ok({"file_id": file_id, "file_unique_id": file_id[-8:], "file_size": found.size,
                           "file_path": found.path})


def _str(value) -> str:
    if isinstance(value, dict):
        return ""
    return "" if value is None else str(value)


_PATH_RE = re.compile(r"^/bot(?P<token>[^/]*)/(?P<method>[A-Za-z]*)$")
_FILE_RE = re.compile(r"^/file/bot(?P<token>[^/]*)/(?P<path>.+)$")


class _Handler(FakeHandler):
    fake: FakeTelegram
    server_version = "nginx/1.18.0"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _read(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        params: dict = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        content_type = self.headers.get("Content-Type") or ""
        kind = content_type.split(";")[0].strip().lower()
        if body and kind == "application/json":
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()})
        elif body and kind == "multipart/form-data":
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                filename = part.get_filename()
                payload = part.get_payload(decode=True) or b""
                if filename is not None:
                    params[name] = {"filename": filename, "content_type": part.get_content_type(), "content": payload}
                else:
                    params[name] = payload.decode("utf-8", "replace")
        elif body and kind in ("", "application/x-www-form-urlencoded"):
            params.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()})
        api_method, token = "", ""
        match = _PATH_RE.match(parts.path)
        if match:
            api_method, token = match.group("method") or "-", match.group("token")
        else:
            found = _FILE_RE.match(parts.path)
            if found:
                token, params["file_path"] = found.group("token"), found.group("path")
        return RecordedRequest(method=self.command, path=parts.path, api_method=api_method, token=token, params=params,
                               headers=Headers(self.headers.items()), body=body)

    def _dispatch(self) -> None:
        fake = self.fake
        req = self._read()
        if not req.token and not req.api_method:
            result = _Answer.error(404, "Not Found")
        else:
            try:
                result = fake._handle(req)
            except Exception as exc:  # answer like the Bot API would, never kill the handler
                result = _Answer.error(500, f"Internal Server Error: {type(exc).__name__}: {exc}")
        with fake._lock:
            fake.requests.append(req)
        if result is _DROP:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if isinstance(result, tuple) and result[0] == "hang":
            _, scripted, result = result
            self._hold(scripted)
        self._write(result)

    def _hold(self, scripted: Hang) -> None:
        fake = self.fake
        with fake._lock:
            release = fake._release
        deadline = time.monotonic() + scripted.seconds
        while time.monotonic() < deadline:
            if fake._stopping.is_set() or release.is_set() or (scripted.release is not None and scripted.release.is_set()):
                return
            time.sleep(0.02)

    def _write(self, answer: _Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
