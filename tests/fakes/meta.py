"""A fake Meta Graph API (Facebook Login, Messenger, Instagram, WhatsApp Cloud) over real HTTP.

Standard library only for the server, like ``tests/fakes/twilio.py``; the app's real
``requests`` calls reach it through ``settings.META_GRAPH_BASE`` (and the OAuth dialog through
``settings.META_DIALOG_BASE``).  Every path is versioned: ``/v21.0/...``.

Usage::

    fake = FakeMeta().start()                      # or: with FakeMeta() as fake:
    fake.set_app("1234", "app-secret")
    fake.add_page("111", "Acme Support", "page-token", instagram=("178", "acme"))
    code = fake.issue_code("https://parley.test/settings/integrations/meta/callback/")
    ...                                            # the app exchanges the code, lists pages...
    fake.requests                                  # every request received (RecordedRequest)
    fake.sent                                      # every accepted Send API call (dicts)
    fake.subscriptions["111"]                      # fields the app subscribed the page to
    fake.stop()

Endpoints (``V`` = the Graph version, any ``vNN.N``)
----------------------------------------------------
``GET /V/dialog/oauth?client_id&redirect_uri&state&scope``
    Facebook Login's dialog, auto-approved: 302 to ``redirect_uri?code=...&state=...`` for the
    pages given to :meth:`FakeMeta.set_dialog_pages` (default: every page).  Wrong client_id:
    400.  ``fake.dialog_denied = True`` answers ``error=access_denied`` instead.
``GET /V/oauth/access_token``
    ``client_id, client_secret, redirect_uri, code``: one-time code -> short-lived user token.
    ``grant_type=fb_exchange_token, client_id, client_secret, fb_exchange_token``: long-lived.
    Bad app credentials: 400/1 ("Error validating client secret"); bad/used code: 400/100
    subcode 36009; redirect_uri not the one the code was issued for: 400/100 subcode 36008.
``GET /V/me/accounts?fields=...`` with a user token
    ``{"data": [{"id", "name", "access_token", "category", "tasks",
    "instagram_business_account": {"id", "username"}}], "paging": {...}}``
``POST|GET|DELETE /V/{page-id}/subscribed_apps`` with the page token
    POST needs ``subscribed_fields`` (comma separated) -> ``{"success": true}``; recorded in
    ``fake.subscriptions[page_id]``; GET lists them; DELETE removes them.  The same path with a
    WhatsApp Business Account id (and its number's token) subscribes the WABA
    (``fake.subscriptions[waba_id] == ["messages"]``).
``POST /V/{page-id}/messages``, ``POST /V/me/messages`` (page token), ``POST /V/{ig-id}/messages``
    Send API.  Checks the page token, ``recipient.id``, exactly one of ``message`` /
    ``sender_action``, ``messaging_type`` (RESPONSE, UPDATE, MESSAGE_TAG; MESSAGE_TAG needs
    ``tag``), text <= 2000 (Messenger) / 1000 (Instagram).  Answers
    ``{"recipient_id", "message_id": "m_..."}`` (sender actions: ``{"recipient_id"}``).
``POST /V/{phone-number-id}/messages`` (Bearer system-user token)
    WhatsApp Cloud: ``messaging_product=whatsapp``; ``type`` text / image / document / audio /
    video (by ``link``) / template, or ``status: read`` with ``message_id``.  Answers
    ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}],
    "messages": [{"id": "wamid...."}]}`` (read: ``{"success": true}``).
``GET /V/{phone-number-id}`` (Bearer) -> ``{"id", "display_phone_number", "verified_name",
    "quality_rating", "code_verification_status"}``.
``GET /V/{psid|igsid}?fields=...`` (page token) -> the profile from :meth:`add_profile`.
``GET /V/{media-id}`` (Bearer) -> ``{"messaging_product", "url", "mime_type", "sha256",
    "file_size", "id"}``; the ``url`` (``/whatsapp-media/...``) needs the same Bearer token.
``GET /cdn/{name}`` -> bytes from :meth:`add_cdn_media` (no auth; like Meta's CDN URLs).

Errors use Graph's body::

    {"error": {"message": "...", "type": "OAuthException", "code": 190,
               "error_subcode": 463, "fbtrace_id": "A..."}}

Scripted responses
------------------
``fake.script(*responses, endpoint=None)`` queues answers for the next requests of one
endpoint (``"oauth"``, ``"accounts"``, ``"subscribed_apps"``, ``"send"`` (Messenger and
Instagram), ``"whatsapp"`` (WhatsApp Cloud sends), ``"phone_number"``, ``"profile"``,
``"media"``) or any request when ``endpoint`` is None.  The endpoint queue is used first.
Types: ``GraphErrorAnswer(status, code, message, subcode=None, type=..., retry_after=None)``,
``Hang(seconds, release)``, ``Drop()``.  Factories for Meta's documented errors:
``token_expired()`` (190/463), ``token_invalid()`` (190/460), ``permission_denied()`` (10),
``permission_missing()`` (200), ``outside_window()`` (10/2018278), ``user_unavailable()``
(551/1545041), ``rate_limited(code=613)`` (also 4, 17, 32, 80007), ``whatsapp_re_engagement()``
(131047), ``whatsapp_undeliverable()`` (131026), ``server_error()`` (500, code 1),
``invalid_parameter(message)`` (100), ``hang(...)``, ``drop()``.

Webhooks
--------
``signature(body, app_secret)`` -> ``"sha256=<hex hmac>"`` for ``X-Hub-Signature-256``;
``webhook(object, entries)`` builds the JSON bytes Meta posts; ``messaging_entry``,
``messenger_text``, ``whatsapp_entry``, ``whatsapp_text``, ``whatsapp_status`` build entries in
Meta's documented shapes; :meth:`FakeMeta.signed_post` posts a signed body over HTTP.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.http import FakeHandler, Headers

MESSENGER_TEXT_LIMIT = 2000
INSTAGRAM_TEXT_LIMIT = 1000
WHATSAPP_TEXT_LIMIT = 4096
MESSAGING_TYPES = {"RESPONSE", "UPDATE", "MESSAGE_TAG"}
SENDER_ACTIONS = {"typing_on", "typing_off", "mark_seen"}
WHATSAPP_MEDIA = {"image", "document", "audio", "video", "sticker"}

_VERSIONED_RE = re.compile(r"^/(?P<version>v\d+\.\d+)(?P<rest>/.*)$")


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class GraphErrorAnswer:
    """Answer with a Graph error body."""

    status: int
    code: int
    message: str
    subcode: int | None = None
    type: str = "OAuthException"
    retry_after: int | float | None = None
    details: str | None = None  # WhatsApp Cloud's error_data.details


@dataclass(frozen=True)
class Hang:
    """Hold the answer for ``seconds`` (or until released); a valid send is recorded first."""

    seconds: float = 30.0
    release: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering (``created=True``: a valid send is recorded)."""

    created: bool = False


Scripted = GraphErrorAnswer | Hang | Drop


def error(status: int, code: int, message: str, subcode: int | None = None, **kwargs) -> GraphErrorAnswer:
    return GraphErrorAnswer(status, code, message, subcode, **kwargs)


def token_expired() -> GraphErrorAnswer:
    return GraphErrorAnswer(
        400, 190, "Error validating access token: Session has expired on Tuesday, 01-Jan-30 00:00:00 PST.", 463
    )


def token_invalid() -> GraphErrorAnswer:
    return GraphErrorAnswer(
        400,
        190,
        "Error validating access token: The session has been invalidated because the user changed their "
        "password or Facebook has changed the session for security reasons.",
        460,
    )


def permission_denied() -> GraphErrorAnswer:
    return GraphErrorAnswer(403, 10, "(#10) Application does not have permission for this action")


def permission_missing(permission: str = "pages_messaging") -> GraphErrorAnswer:
    return GraphErrorAnswer(
        403, 200, f"(#200) Requires {permission} permission to manage the object", type="OAuthException"
    )


def outside_window() -> GraphErrorAnswer:
    return GraphErrorAnswer(
        400,
        10,
        "(#10) This message is sent outside of allowed window. Learn more about the new policy here: "
        "https://developers.facebook.com/docs/messenger-platform/policy-overview",
        2018278,
    )


def user_unavailable() -> GraphErrorAnswer:
    return GraphErrorAnswer(400, 551, "(#551) This person isn't available right now.", 1545041)


def rate_limited(code: int = 613, retry_after: int | float | None = None) -> GraphErrorAnswer:
    messages = {
        4: "(#4) Application request limit reached",
        17: "(#17) User request limit reached",
        32: "(#32) Page request limit reached",
        613: "(#613) Calls to this api have exceeded the rate limit.",
        80007: "(#80007) There have been too many messages sent from this WhatsApp Business Account.",
        130429: "(#130429) Rate limit hit",
    }
    return GraphErrorAnswer(
        400, code, messages.get(code, f"(#{code}) Rate limit hit"), retry_after=retry_after
    )


def whatsapp_re_engagement() -> GraphErrorAnswer:
    return GraphErrorAnswer(
        400,
        131047,
        "(#131047) Re-engagement message",
        type="OAuthException",
        details="Message failed to send because more than 24 hours have passed since the customer last replied "
        "to this number.",
    )


def whatsapp_undeliverable() -> GraphErrorAnswer:
    return GraphErrorAnswer(
        400, 131026, "(#131026) Message Undeliverable.", details="Message Undeliverable."
    )


def invalid_parameter(message: str = "(#100) Invalid parameter", subcode: int | None = None) -> GraphErrorAnswer:
    return GraphErrorAnswer(400, 100, message, subcode)


def server_error() -> GraphErrorAnswer:
    return GraphErrorAnswer(500, 1, "An unknown error occurred", type="OAuthException")


def service_unavailable(retry_after: int | float | None = None) -> GraphErrorAnswer:
    return GraphErrorAnswer(503, 2, "An unexpected error has occurred. Please retry your request later.",
                            retry_after=retry_after)


def hang(seconds: float = 30.0, release: threading.Event | None = None) -> Hang:
    return Hang(seconds, release)


def drop(created: bool = False) -> Drop:
    return Drop(created)


# --------------------------------------------------------------------------- webhooks


def signature(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value Meta sends: HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def webhook(object_: str, entries: list[dict]) -> bytes:
    """The raw body of one webhook POST: ``{"object": "page"|"instagram"|"whatsapp_business_account",
    "entry": [...]}``.  Meta batches several entries (and several events per entry)."""
    return json.dumps({"object": object_, "entry": entries}, separators=(",", ":")).encode()


def _now_ms() -> int:
    return int(time.time() * 1000)


def messaging_entry(page_or_ig_id: str, messaging: list[dict], time_ms: int | None = None) -> dict:
    """An entry of a ``page`` or ``instagram`` webhook (``id`` is the page / IG account id)."""
    return {"id": page_or_ig_id, "time": time_ms or _now_ms(), "messaging": messaging}


def messenger_text(page_id: str, sender: str, text: str, *, mid: str | None = None, timestamp: int | None = None,
                   echo: bool = False, quick_reply: str | None = None) -> dict:
    """One ``messaging`` item: a text from ``sender`` (PSID / IGSID) to the page, or with
    ``echo=True`` the page's own message (sender = page, recipient = the user)."""
    message: dict = {"mid": mid or "m_" + secrets.token_urlsafe(24), "text": text}
    if quick_reply is not None:
        message["quick_reply"] = {"payload": quick_reply}
    if echo:
        message["is_echo"] = True
        message["app_id"] = 0
        return {"sender": {"id": page_id}, "recipient": {"id": sender}, "timestamp": timestamp or _now_ms(),
                "message": message}
    return {"sender": {"id": sender}, "recipient": {"id": page_id}, "timestamp": timestamp or _now_ms(),
            "message": message}


def messenger_attachment(page_id: str, sender: str, kind: str, url: str, *, mid: str | None = None,
                         timestamp: int | None = None) -> dict:
    return {"sender": {"id": sender}, "recipient": {"id": page_id}, "timestamp": timestamp or _now_ms(),
            "message": {"mid": mid or "m_" + secrets.token_urlsafe(24),
                        "attachments": [{"type": kind, "payload": {"url": url}}]}}


def messenger_watermark(page_id: str, sender: str, kind: str, watermark: int) -> dict:
    """``kind`` "delivery" or "read": every message before ``watermark`` (ms) was delivered / read."""
    inner = {"watermark": watermark}
    if kind == "delivery":
        inner["mids"] = []
    return {"sender": {"id": sender}, "recipient": {"id": page_id}, "timestamp": _now_ms(), kind: inner}


def whatsapp_entry(waba_id: str, phone_number_id: str, display_phone_number: str, *, messages=None,
                   statuses=None, contacts=None) -> dict:
    value: dict = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
    }
    if contacts is not None:
        value["contacts"] = contacts
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"id": waba_id, "changes": [{"value": value, "field": "messages"}]}


def whatsapp_text(wa_id: str, text: str, *, wamid: str | None = None, timestamp: int | None = None) -> dict:
    return {"from": wa_id, "id": wamid or "wamid." + secrets.token_urlsafe(24),
            "timestamp": str(timestamp or int(time.time())), "type": "text", "text": {"body": text}}


def whatsapp_contact(wa_id: str, name: str) -> dict:
    return {"profile": {"name": name}, "wa_id": wa_id}


def whatsapp_status(wamid: str, status: str, recipient_id: str, *, timestamp: int | None = None,
                    errors: list[dict] | None = None) -> dict:
    item = {"id": wamid, "status": status, "timestamp": str(timestamp or int(time.time())),
            "recipient_id": recipient_id}
    if errors:
        item["errors"] = errors
    return item


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string, with the version prefix
    params: dict[str, list[str]]  # query string + form body, values in order
    headers: Headers
    query: str = ""
    body: bytes = b""
    json: dict | None = None  # a JSON body, parsed
    endpoint: str = ""  # which endpoint answered ("send", "oauth", ...; "" when none matched)

    def param(self, name: str, default: str | None = None) -> str | None:
        """First value of a query/form param, else the JSON body's top-level value, else ``default``."""
        values = self.params.get(name)
        if values:
            return values[0]
        if isinstance(self.json, dict) and name in self.json:
            return self.json[name]
        return default

    @property
    def access_token(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        token = self.param("access_token")
        return token if isinstance(token, str) else None


@dataclass
class _Page:
    id: str
    name: str
    token: str
    category: str = "Company"
    instagram: tuple[str, str] | None = None  # (ig account id, username)


@dataclass
class _Number:
    id: str
    token: str
    display_phone_number: str
    verified_name: str
    waba_id: str


@dataclass
class _Blob:
    content: bytes
    content_type: str
    token: str | None = None


@dataclass
class _Code:
    redirect_uri: str
    pages: list[str]


@dataclass
class _UserToken:
    pages: list[str]
    long_lived: bool


class _Answer:
    def __init__(self, status: int, body: bytes = b"", content_type: str = "application/json; charset=UTF-8",
                 headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, status: int, payload, headers=None) -> "_Answer":
        return cls(status, json.dumps(payload).encode("utf-8"), headers=headers)

    @classmethod
    def error(cls, scripted: GraphErrorAnswer) -> "_Answer":
        body: dict = {"message": scripted.message, "type": scripted.type, "code": scripted.code,
                      "fbtrace_id": "A" + secrets.token_urlsafe(15)}
        if scripted.subcode is not None:
            body["error_subcode"] = scripted.subcode
        if scripted.details is not None:
            body["error_data"] = {"messaging_product": "whatsapp", "details": scripted.details}
        headers = {"WWW-Authenticate": f'OAuth "Facebook Platform" "invalid_token" "{scripted.message}"'} \
            if scripted.code == 190 else {}
        if scripted.retry_after is not None:
            ra = scripted.retry_after
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        return cls.json(scripted.status, {"error": body}, headers=headers)


def _err(status: int, code: int, message: str, subcode: int | None = None, type_: str = "OAuthException") -> _Answer:
    return _Answer.error(GraphErrorAnswer(status, code, message, subcode, type=type_))


def _bad_token() -> _Answer:
    return _err(400, 190, "Invalid OAuth access token - Cannot parse access token")


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


_DROP = object()


# --------------------------------------------------------------------------- server


class FakeMeta:
    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self.sent: list[dict] = []  # accepted Send API / WhatsApp calls: {"path", "json", "response"}
        self.subscriptions: dict[str, list[str]] = {}
        self.base_url: str = ""
        self.app_id = ""
        self.app_secret = ""
        self.dialog_denied = False
        self._lock = threading.RLock()
        self._pages: dict[str, _Page] = {}
        self._numbers: dict[str, _Number] = {}
        self._profiles: dict[str, dict] = {}
        self._cdn: dict[str, _Blob] = {}
        self._wa_media: dict[str, _Blob] = {}
        self._codes: dict[str, _Code] = {}
        self._user_tokens: dict[str, _UserToken] = {}
        self._dialog_pages: list[str] | None = None
        self._scripts: collections.deque = collections.deque()
        self._scripts_by_endpoint: dict[str, collections.deque] = {}
        self._stopping = threading.Event()
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "FakeMeta":
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
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeMeta", daemon=True
        )
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

    def __enter__(self) -> "FakeMeta":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ setup

    def set_app(self, app_id: str, app_secret: str) -> None:
        with self._lock:
            self.app_id, self.app_secret = app_id, app_secret

    def add_page(self, page_id: str, name: str, token: str, *, instagram: tuple[str, str] | None = None,
                 category: str = "Company") -> None:
        """A Facebook Page the (fake) user manages; ``instagram`` = (IG business account id, username)."""
        with self._lock:
            self._pages[page_id] = _Page(page_id, name, token, category, instagram)

    def add_whatsapp_number(self, phone_number_id: str, token: str, *, display_phone_number: str = "+1 555-010-0000",
                            verified_name: str = "Acme", waba_id: str = "") -> None:
        with self._lock:
            self._numbers[phone_number_id] = _Number(phone_number_id, token, display_phone_number, verified_name,
                                                     waba_id)

    def add_profile(self, user_id: str, **fields) -> None:
        """Messenger: first_name, last_name, profile_pic; Instagram: name, username, profile_pic."""
        with self._lock:
            self._profiles[user_id] = {"id": user_id, **fields}

    def add_cdn_media(self, content: bytes, content_type: str, name: str | None = None) -> str:
        """A file at a CDN-like URL (no auth), as Messenger / Instagram attachments point to."""
        name = name or secrets.token_hex(8)
        with self._lock:
            self._cdn[name] = _Blob(bytes(content), content_type)
        return f"{self.base_url}/cdn/{name}"

    def add_whatsapp_media(self, content: bytes, content_type: str, token: str) -> str:
        """WhatsApp Cloud media: returns the media id that webhooks carry."""
        media_id = str(10**15 + secrets.randbelow(10**15))
        with self._lock:
            self._wa_media[media_id] = _Blob(bytes(content), content_type, token)
        return media_id

    def issue_code(self, redirect_uri: str, pages: list[str] | None = None) -> str:
        """A one-time OAuth code for a user who manages ``pages`` (default: every page)."""
        code = "AQ" + secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(redirect_uri, list(self._pages) if pages is None else list(pages))
        return code

    def set_dialog_pages(self, pages: list[str] | None) -> None:
        """Which pages the user approves in the (auto-approved) dialog; None: every page."""
        with self._lock:
            self._dialog_pages = None if pages is None else list(pages)

    def revoke_page_token(self, page_id: str) -> None:
        """The page token stops working (Graph answers 190 for it)."""
        with self._lock:
            self._pages[page_id].token = "revoked-" + secrets.token_hex(8)

    def script(self, *responses: Scripted, endpoint: str | None = None) -> None:
        for response in responses:
            if not isinstance(response, (GraphErrorAnswer, Hang, Drop)):
                raise TypeError(f"not a scripted response: {response!r}")
        with self._lock:
            if endpoint is None:
                self._scripts.extend(responses)
            else:
                self._scripts_by_endpoint.setdefault(endpoint, collections.deque()).extend(responses)

    def release_hangs(self) -> None:
        with self._lock:
            old, self._release = self._release, threading.Event()
        old.set()

    def reset(self) -> None:
        """Forget everything: app, pages, numbers, profiles, media, codes, tokens, records, scripts."""
        with self._lock:
            self.requests.clear()
            self.sent.clear()
            self.subscriptions.clear()
            self.app_id = self.app_secret = ""
            self.dialog_denied = False
            self._pages.clear()
            self._numbers.clear()
            self._profiles.clear()
            self._cdn.clear()
            self._wa_media.clear()
            self._codes.clear()
            self._user_tokens.clear()
            self._dialog_pages = None
            self._scripts.clear()
            self._scripts_by_endpoint.clear()

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    # ------------------------------------------------------------------ webhooks

    def signed_post(self, url: str, body: bytes, app_secret: str | None = None) -> int:
        """POST a webhook body to the app over HTTP, signed like Meta does."""
        import requests

        secret = self.app_secret if app_secret is None else app_secret
        response = requests.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature(body, secret),
                     "User-Agent": "facebookexternalua"},
            timeout=10,
            allow_redirects=False,
        )
        return response.status_code

    # ------------------------------------------------------------------ request handling

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _next_script(self, endpoint: str) -> Scripted | None:
        with self._lock:
            queue = self._scripts_by_endpoint.get(endpoint)
            if queue:
                return queue.popleft()
            if self._scripts:
                return self._scripts.popleft()
        return None

    def _route(self, req: RecordedRequest):
        """(endpoint name, handler) for a request, or None."""
        if req.path.startswith("/cdn/") and req.method in ("GET", "HEAD"):
            return "cdn", self._cdn_get
        if req.path.startswith("/whatsapp-media/") and req.method in ("GET", "HEAD"):
            return "media_download", self._wa_media_download
        m = _VERSIONED_RE.match(req.path)
        if not m:
            return None
        rest = m.group("rest").rstrip("/")
        parts = rest.strip("/").split("/")
        if rest == "/dialog/oauth" and req.method == "GET":
            return "dialog", self._dialog
        if rest == "/oauth/access_token":
            return "oauth", self._access_token
        if rest == "/me/accounts" and req.method == "GET":
            return "accounts", self._me_accounts
        if len(parts) == 2 and parts[1] == "subscribed_apps":
            return "subscribed_apps", lambda r: self._subscribed_apps(r, parts[0])
        if len(parts) == 2 and parts[1] == "messages" and req.method == "POST":
            with self._lock:
                is_number = parts[0] in self._numbers
            if is_number:
                return "whatsapp", lambda r: self._whatsapp_send(r, parts[0])
            return "send", lambda r: self._send(r, parts[0])
        if len(parts) == 1 and req.method in ("GET", "HEAD"):
            with self._lock:
                kind = ("phone_number" if parts[0] in self._numbers
                        else "media" if parts[0] in self._wa_media else "profile")
            if kind == "phone_number":
                return kind, lambda r: self._phone_number(r, parts[0])
            if kind == "media":
                return kind, lambda r: self._wa_media_info(r, parts[0])
            return kind, lambda r: self._profile(r, parts[0])
        return None

    def _handle(self, req: RecordedRequest):
        route = self._route(req)
        if route is None:
            req.endpoint = ""
            return _err(400, 100, f"Unsupported {req.method} request. Object with ID '{req.path}' does not "
                                  "exist, cannot be loaded due to missing permissions, or does not support this "
                                  "operation.", 33, "GraphMethodException")
        endpoint, handler = route
        req.endpoint = endpoint
        scripted = self._next_script(endpoint) if endpoint not in ("cdn", "media_download", "dialog") else None
        if isinstance(scripted, GraphErrorAnswer):
            return _Answer.error(scripted)
        if isinstance(scripted, Drop):
            if scripted.created:
                handler(req)
            return _DROP
        if isinstance(scripted, Hang):
            return ("hang", scripted, handler(req))
        return handler(req)

    # --- OAuth

    def _dialog(self, req: RecordedRequest) -> _Answer:
        redirect_uri = req.param("redirect_uri") or ""
        state = req.param("state") or ""
        if not _same(req.param("client_id"), self.app_id) or not redirect_uri:
            return _Answer(400, b"Invalid App ID or redirect_uri", "text/html; charset=utf-8")
        if self.dialog_denied:
            query = urlencode({"error": "access_denied", "error_code": "200", "error_reason": "user_denied",
                               "error_description": "Permissions error", "state": state})
        else:
            with self._lock:
                pages = self._dialog_pages
            query = urlencode({"code": self.issue_code(redirect_uri, pages), "state": state})
        sep = "&" if "?" in redirect_uri else "?"
        return _Answer(302, b"", "text/html; charset=utf-8", headers={"Location": f"{redirect_uri}{sep}{query}"})

    def _access_token(self, req: RecordedRequest) -> _Answer:
        if not _same(req.param("client_id"), self.app_id):
            return _err(400, 101, "Error validating application. Invalid application ID.")
        if not _same(req.param("client_secret"), self.app_secret):
            return _err(400, 1, "Error validating client secret.")
        if req.param("grant_type") == "fb_exchange_token":
            with self._lock:
                user = self._user_tokens.get(req.param("fb_exchange_token") or "")
                if user is None:
                    return _bad_token()
                token = "EAAL" + secrets.token_urlsafe(40)
                self._user_tokens[token] = _UserToken(list(user.pages), True)
            return _Answer.json(200, {"access_token": token, "token_type": "bearer", "expires_in": 5183944})
        code_value = req.param("code") or ""
        with self._lock:
            code = self._codes.get(code_value)
            if code is None:
                return _err(400, 100, "This authorization code has been used.", 36009)
            if req.param("redirect_uri") != code.redirect_uri:
                return _err(400, 100, "Error validating verification code. Please make sure your redirect_uri is "
                                      "identical to the one you used in the OAuth dialog request", 36008)
            del self._codes[code_value]
            token = "EAAS" + secrets.token_urlsafe(40)
            self._user_tokens[token] = _UserToken(list(code.pages), False)
        return _Answer.json(200, {"access_token": token, "token_type": "bearer", "expires_in": 5183})

    def _me_accounts(self, req: RecordedRequest) -> _Answer:
        with self._lock:
            user = self._user_tokens.get(req.access_token or "")
            if user is None:
                return _bad_token()
            pages = [self._pages[p] for p in user.pages if p in self._pages]
            fields = req.param("fields") or ""
            data = []
            for page in pages:
                item = {"id": page.id, "name": page.name, "access_token": page.token, "category": page.category,
                        "tasks": ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"]}
                if "instagram_business_account" in fields and page.instagram is not None:
                    item["instagram_business_account"] = {"id": page.instagram[0], "username": page.instagram[1]}
                data.append(item)
        return _Answer.json(200, {"data": data, "paging": {"cursors": {"before": "QVFIU", "after": "QVFIU"}}})

    # --- pages

    def _page_for_token(self, token: str | None) -> _Page | None:
        with self._lock:
            for page in self._pages.values():
                if _same(token, page.token):
                    return page
        return None

    def _subscribed_apps(self, req: RecordedRequest, page_id: str) -> _Answer:
        with self._lock:
            number = next((n for n in self._numbers.values() if n.waba_id and n.waba_id == page_id), None)
        if number is not None:  # a WhatsApp Business Account, with its system-user token
            if not _same(req.access_token, number.token):
                return _bad_token()
            with self._lock:
                if req.method == "POST":
                    self.subscriptions[page_id] = ["messages"]
                elif req.method == "DELETE":
                    self.subscriptions.pop(page_id, None)
                else:
                    return _Answer.json(200, {"data": [{"whatsapp_business_api_data": {"id": self.app_id}}]
                                              if page_id in self.subscriptions else []})
            return _Answer.json(200, {"success": True})
        page = self._page_for_token(req.access_token)
        if page is None:
            return _bad_token()
        if page.id != page_id:
            return _err(403, 200, "(#200) Requires pages_manage_metadata permission to manage the object")
        with self._lock:
            if req.method == "POST":
                fields = [f.strip() for f in (req.param("subscribed_fields") or "").split(",") if f.strip()]
                if not fields:
                    return _err(400, 100, "(#100) The parameter subscribed_fields is required.")
                self.subscriptions[page_id] = fields
                return _Answer.json(200, {"success": True})
            if req.method == "DELETE":
                self.subscriptions.pop(page_id, None)
                return _Answer.json(200, {"success": True})
            fields = self.subscriptions.get(page_id)
            data = [] if fields is None else [{"category": "Business", "link": "", "name": "Parley",
                                                "id": self.app_id, "subscribed_fields": fields}]
            return _Answer.json(200, {"data": data})

    def _send(self, req: RecordedRequest, target: str) -> _Answer:
        page = self._page_for_token(req.access_token)
        if page is None:
            return _bad_token()
        instagram = page.instagram is not None and target == page.instagram[0]
        if target not in ("me", page.id) and not instagram:
            return _err(403, 200, "(#200) The page access token does not belong to this object")
        body = req.json if isinstance(req.json, dict) else {
            k: _maybe_json(v[0]) for k, v in req.params.items() if k != "access_token"
        }
        recipient = body.get("recipient")
        if not isinstance(recipient, dict) or not recipient.get("id"):
            return _err(400, 100, "(#100) The parameter recipient is required")
        message, action = body.get("message"), body.get("sender_action")
        if (message is None) == (action is None):
            return _err(400, 100, "(#100) Must send either message or sender_action")
        if action is not None:
            if action not in SENDER_ACTIONS:
                return _err(400, 100, "(#100) Param sender_action must be one of {typing_on, typing_off, mark_seen}")
            return _Answer.json(200, {"recipient_id": recipient["id"]})
        messaging_type = body.get("messaging_type")
        if messaging_type not in MESSAGING_TYPES:
            return _err(400, 100, "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
        if messaging_type == "MESSAGE_TAG" and not body.get("tag"):
            return _err(400, 100, "(#100) Tag is required for MESSAGE_TAG messaging type")
        if messaging_type != "MESSAGE_TAG" and body.get("tag"):
            return _err(400, 100, "(#100) Tag can only be used with MESSAGE_TAG messaging type")
        if not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            return _err(400, 100, "(#100) Message cannot be empty, must provide valid attachment or text")
        limit = INSTAGRAM_TEXT_LIMIT if instagram else MESSENGER_TEXT_LIMIT
        if len(message.get("text") or "") > limit:
            return _err(400, 100, f"(#100) Length of param message[text] must be less than or equal to {limit}")
        attachment = message.get("attachment")
        if attachment is not None:
            payload = attachment.get("payload") if isinstance(attachment, dict) else None
            if attachment.get("type") not in ("image", "video", "audio", "file") or not isinstance(payload, dict) \
                    or not (payload.get("url") or payload.get("attachment_id")):
                return _err(400, 100, "(#100) Invalid attachment")
        answer = {"recipient_id": recipient["id"], "message_id": "m_" + secrets.token_urlsafe(40)}
        with self._lock:
            self.sent.append({"channel": "instagram" if instagram else "messenger", "page_id": page.id,
                              "path": req.path, "json": body, "response": answer})
        return _Answer.json(200, answer)

    def _profile(self, req: RecordedRequest, user_id: str) -> _Answer:
        # Any token the fake knows reaches "some object": an unknown id is then Graph's 100/33.
        with self._lock:
            number_token = any(_same(req.access_token, n.token) for n in self._numbers.values())
        if self._page_for_token(req.access_token) is None and not number_token:
            return _bad_token()
        with self._lock:
            profile = self._profiles.get(user_id)
        if profile is None:
            return _err(400, 100, f"Unsupported get request. Object with ID '{user_id}' does not exist, cannot be "
                                  "loaded due to missing permissions, or does not support this operation.", 33,
                        "GraphMethodException")
        fields = [f for f in (req.param("fields") or "").split(",") if f]
        if fields:
            profile = {"id": user_id, **{k: v for k, v in profile.items() if k in fields}}
        return _Answer.json(200, profile)

    # --- WhatsApp Cloud

    def _number_auth(self, req: RecordedRequest, phone_number_id: str) -> _Number | _Answer:
        with self._lock:
            number = self._numbers[phone_number_id]
        if not _same(req.access_token, number.token):
            return _bad_token()
        return number

    def _phone_number(self, req: RecordedRequest, phone_number_id: str) -> _Answer:
        number = self._number_auth(req, phone_number_id)
        if isinstance(number, _Answer):
            return number
        return _Answer.json(200, {"verified_name": number.verified_name, "code_verification_status": "VERIFIED",
                                  "display_phone_number": number.display_phone_number, "quality_rating": "GREEN",
                                  "platform_type": "CLOUD_API", "id": number.id})

    def _whatsapp_send(self, req: RecordedRequest, phone_number_id: str) -> _Answer:
        number = self._number_auth(req, phone_number_id)
        if isinstance(number, _Answer):
            return number
        body = req.json if isinstance(req.json, dict) else {}
        if body.get("messaging_product") != "whatsapp":
            return _err(400, 100, "(#100) The parameter messaging_product is required.")
        if body.get("status") is not None:
            if body["status"] != "read" or not body.get("message_id"):
                return _err(400, 100, "(#100) Invalid parameter", type_="OAuthException")
            with self._lock:
                self.sent.append({"channel": "whatsapp", "phone_number_id": phone_number_id, "path": req.path,
                                  "json": body, "response": {"success": True}})
            return _Answer.json(200, {"success": True})
        to = str(body.get("to") or "")
        digits = to.lstrip("+")
        if not digits.isdigit() or not 8 <= len(digits) <= 15:
            return _err(400, 131009, "(#131009) Parameter value is not valid", type_="OAuthException")
        kind = body.get("type", "text")
        if kind == "text":
            text = (body.get("text") or {}).get("body") or ""
            if not text:
                return _err(400, 100, "(#100) The parameter text['body'] is required.")
            if len(text) > WHATSAPP_TEXT_LIMIT:
                return _err(400, 100, f"(#100) Param text['body'] must be at most {WHATSAPP_TEXT_LIMIT} characters "
                                      "long.")
        elif kind in WHATSAPP_MEDIA:
            media = body.get(kind) or {}
            if not (media.get("link") or media.get("id")):
                return _err(400, 100, f"(#100) The parameter {kind}['link'] or {kind}['id'] is required.")
        elif kind == "template":
            template = body.get("template") or {}
            if not template.get("name") or not (template.get("language") or {}).get("code"):
                return _err(400, 100, "(#100) The parameter template['name'] and template['language'] are required.")
        else:
            return _err(400, 100, "(#100) Param type must be one of text, image, document, audio, video, template")
        answer = {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": digits}],
                  "messages": [{"id": "wamid." + secrets.token_urlsafe(40)}]}
        with self._lock:
            self.sent.append({"channel": "whatsapp", "phone_number_id": phone_number_id, "path": req.path,
                              "json": body, "response": answer})
        return _Answer.json(200, answer)

    def _wa_media_info(self, req: RecordedRequest, media_id: str) -> _Answer:
        with self._lock:
            blob = self._wa_media[media_id]
        if not _same(req.access_token, blob.token):
            return _bad_token()
        return _Answer.json(200, {"messaging_product": "whatsapp", "url": f"{self.base_url}/whatsapp-media/{media_id}",
                                  "mime_type": blob.content_type,
                                  "sha256": hashlib.sha256(blob.content).hexdigest(),
                                  "file_size": len(blob.content), "id": media_id})

    def _wa_media_download(self, req: RecordedRequest) -> _Answer:
        media_id = req.path.rsplit("/", 1)[-1]
        with self._lock:
            blob = self._wa_media.get(media_id)
        if blob is None:
            return _Answer(404, b"Not found", "text/plain")
        if not _same(req.access_token, blob.token):
            return _Answer(401, b"Unauthorized", "text/plain")
        return _Answer(200, blob.content, blob.content_type)

    def _cdn_get(self, req: RecordedRequest) -> _Answer:
        with self._lock:
            blob = self._cdn.get(req.path[len("/cdn/"):])
        if blob is None:
            return _Answer(404, b"Not found", "text/plain")
        return _Answer(200, blob.content, blob.content_type)


def _maybe_json(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


class _Handler(FakeHandler):
    fake: FakeMeta
    server_version = "FakeMeta"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _read_request(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        params: dict[str, list[str]] = {}
        for key, values in parse_qs(parts.query, keep_blank_values=True).items():
            params.setdefault(key, []).extend(values)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        parsed = None
        if body and ctype == "application/json":
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        elif body and ctype in ("", "application/x-www-form-urlencoded"):
            for key, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
        return RecordedRequest(method=self.command, path=parts.path, params=params,
                               headers=Headers(self.headers.items()), query=parts.query, body=body, json=parsed)

    def _dispatch(self) -> None:
        fake = self.fake
        req = self._read_request()
        try:
            result = fake._handle(req)
        except Exception as exc:  # answer like Graph would, never kill the handler
            result = _err(500, 1, f"An unknown error occurred ({type(exc).__name__}: {exc})")
        fake._record(req)
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
            global_release = fake._release
        deadline = time.monotonic() + scripted.seconds
        while time.monotonic() < deadline:
            if fake._stopping.is_set() or global_release.is_set():
                return
            if scripted.release is not None and scripted.release.is_set():
                return
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def _write(self, answer: _Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.send_header("x-fb-trace-id", secrets.token_urlsafe(8))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
