"""A fake Twilio Programmable Messaging API served over real HTTP on 127.0.0.1.

The app's real ``twilio`` SDK talks to it (point the SDK's HTTP client at
``FakeTwilio.base_url`` instead of ``https://api.twilio.com``).  Standard
library only for the server; ``requests`` is used by
:meth:`FakeTwilio.post_status_callback` to deliver callbacks to the app.

Usage::

    fake = FakeTwilio().start()          # or: with FakeTwilio() as fake:
    fake.add_account("AC" + "0" * 32, "token", ["whatsapp:+14155238886"])
    ...                                  # app sends messages
    fake.sent[0]["sid"]                  # the Message resources returned (201)
    fake.requests                        # every request received (RecordedRequest)
    fake.stop()

Endpoints
---------
``POST /2010-04-01/Accounts/{AC}/Messages.json``
    Create a message (form-encoded; ``MediaUrl`` may repeat).  Checks, in order:
    Basic auth (401/20003; unknown path account with right-looking auth ->
    404/20404), scripted responses (see below), ``To`` present (400/21604),
    ``From`` present (400/21603), ``From`` is one of the account's senders
    (400/63007), ``To`` is ``whatsapp:+<8..15 digits>`` (400/21211), one of
    ``Body``/``MediaUrl``/``ContentSid`` (400/21619), ``Body`` <= 1600 chars
    (400/21617), at most 10 ``MediaUrl`` (400/21623), each an absolute
    http(s) URL (400/21620), ``ContentVariables`` a JSON object (400/21656),
    then the optional per-(account, From) token-bucket rate limit
    (429/20429, ``Retry-After: 1``).  Success: 201 with the Message JSON.
``GET /2010-04-01/Accounts/{AC}/Messages/{SM}.json``
    Fetch a created message (reflects statuses set via status_callback()).
``GET /2010-04-01/Accounts/{AC}/Messages/{MM}/Media/{ME}``
    Media registered with :meth:`FakeTwilio.add_media` (Basic auth of AC).
Anything else: 404/20404 with Twilio's error JSON.

Errors use Twilio's (legacy, non RFC-9457) body, which the SDK turns into
``TwilioRestException(status, uri, msg, code)``::

    {"code": 21211, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}

Scripted responses
------------------
``fake.script(*responses, to=None)`` queues responses for the next create
calls (only calls with that exact ``To`` when ``to`` is given; a To-specific
queue is used before the general one).  Each create call consumes one, after
the auth check and before validation / rate limiting.  Types (frozen
dataclasses) and factories:

* ``ScriptedError(status, code, message, retry_after=None)`` -- answer with a
  Twilio error body; ``retry_after`` adds a ``Retry-After`` header (seconds).
  Factories: ``error(status, code, message, retry_after=None)``,
  ``invalid_to(to)`` (400/21211), ``unsubscribed()`` (400/21610),
  ``outside_window()`` (400/63016), ``authenticate()`` (401/20003),
  ``not_found(path)`` (404/20404), ``too_many_requests(retry_after=1)``
  (429/20429), ``server_error()`` (500/20500),
  ``service_unavailable(retry_after=None)`` (503/20503).
* ``Hang(seconds=30.0, release=None)`` / ``hang(...)`` -- the request is
  validated and, if valid, the message is created *immediately* (it is in
  ``sent`` while the client waits), then the answer is held for ``seconds``
  or until ``release`` (a ``threading.Event``) is set,
  :meth:`FakeTwilio.release_hangs` or :meth:`FakeTwilio.stop` is called;
  then the normal answer (201, or the validation error) is written, if the
  client is still listening.
* ``Drop(created=False)`` / ``drop(created=False)`` -- the body is read and
  the socket closed without any answer (the SDK raises
  ``requests.exceptions.ConnectionError``).  With ``created=True`` a valid
  request is first created (provider received it, the answer got lost).

Status callbacks
----------------
``status_callback(sid, status, error_code=None)`` sets the stored message's
status (and error_code) -- as seen by GET -- and returns
``(StatusCallback URL given at create time, form params)``;
``post_status_callback`` also POSTs them, signed with the account's token
(``X-Twilio-Signature``, HMAC-SHA1 as computed by
``twilio.request_validator.RequestValidator``).
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime
import hmac
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

API_VERSION = "2010-04-01"
MAX_BODY_LENGTH = 1600
MAX_MEDIA = 10

_TO_RE = re.compile(r"^whatsapp:\+[1-9][0-9]{7,14}$")
_ACCOUNT_PATH_RE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)(?P<rest>/.*)?$")
_MESSAGES_RE = re.compile(r"^/Messages\.json$")
_MESSAGE_RE = re.compile(r"^/Messages/(?P<sid>(?:SM|MM)[0-9a-fA-F]{32})\.json$")
_MEDIA_RE = re.compile(
    r"^/Messages/(?P<msid>(?:SM|MM)[0-9a-fA-F]{32})/Media/(?P<mesid>ME[0-9a-fA-F]{32})$"
)

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class ScriptedError:
    """Answer a create call with a Twilio error body."""

    status: int
    code: int | None
    message: str
    retry_after: int | float | None = None


@dataclass(frozen=True)
class Hang:
    """Hold the answer for ``seconds`` (or until released); the message is created."""

    seconds: float = 30.0
    release: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""

    created: bool = False


Scripted = ScriptedError | Hang | Drop


def error(status: int, code: int | None, message: str, retry_after: int | float | None = None) -> ScriptedError:
    return ScriptedError(status, code, message, retry_after)


def invalid_to(to: str) -> ScriptedError:
    return ScriptedError(400, 21211, f"The 'To' number {to} is not a valid phone number.")


def unsubscribed() -> ScriptedError:
    return ScriptedError(400, 21610, "Attempt to send to unsubscribed recipient")


def outside_window() -> ScriptedError:
    return ScriptedError(
        400,
        63016,
        "Failed to send freeform message because you are outside the allowed window. "
        "If you want to send messages outside this window, please use a Message Template.",
    )


def authenticate() -> ScriptedError:
    return ScriptedError(401, 20003, "Authenticate")


def not_found(path: str = "") -> ScriptedError:
    return ScriptedError(404, 20404, f"The requested resource {path} was not found")


def too_many_requests(retry_after: int | float = 1) -> ScriptedError:
    return ScriptedError(429, 20429, "Too Many Requests", retry_after)


def server_error() -> ScriptedError:
    return ScriptedError(500, 20500, "Internal Server Error")


def service_unavailable(retry_after: int | float | None = None) -> ScriptedError:
    return ScriptedError(503, 20503, "Service Unavailable", retry_after)


def hang(seconds: float = 30.0, release: threading.Event | None = None) -> Hang:
    return Hang(seconds, release)


def drop(created: bool = False) -> Drop:
    return Drop(created)


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    params: dict[str, list[str]]  # query string + form body, values in order
    auth: tuple[str, str] | None
    headers: Headers
    query: str = ""
    body: bytes = b""

    def param(self, name: str, default: str | None = None) -> str | None:
        """First value of a param, or ``default``."""
        values = self.params.get(name)
        return values[0] if values else default


@dataclass
class _Account:
    sid: str
    token: str
    senders: list[str]


@dataclass
class _Media:
    account_sid: str
    content: bytes
    content_type: str


@dataclass
class _Message:
    resource: dict
    status_callback: str | None


class _Bucket:
    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _rfc2822(dt: datetime.datetime) -> str:
    dt = dt.astimezone(datetime.timezone.utc)
    return (
        f"{_DAYS[dt.weekday()]}, {dt.day:02d} {_MONTHS[dt.month - 1]} {dt.year} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} +0000"
    )


def _error_body(status: int, code: int | None, message: str) -> dict:
    code = status if code is None else code
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class _Answer:
    """What a handler writes back."""

    def __init__(self, status: int, body: bytes = b"", content_type: str = "application/json; charset=utf-8", headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})

    @classmethod
    def json(cls, status: int, payload, headers=None) -> "_Answer":
        return cls(status, json.dumps(payload).encode("utf-8"), headers=headers)

    @classmethod
    def error(cls, status: int, code: int | None, message: str, headers=None) -> "_Answer":
        return cls.json(status, _error_body(status, code, message), headers=headers)


_DROP = object()  # sentinel answer: close without responding


# --------------------------------------------------------------------------- server


class FakeTwilio:
    def __init__(self, rate_per_second: float | None = None):
        self.rate_per_second = rate_per_second
        self.requests: list[RecordedRequest] = []
        self.sent: list[dict] = []
        self.base_url: str = ""
        self._lock = threading.RLock()
        self._accounts: dict[str, _Account] = {}
        self._media: dict[str, _Media] = {}  # path -> media
        self._messages: dict[str, _Message] = {}
        self._scripts: collections.deque = collections.deque()
        self._scripts_by_to: dict[str, collections.deque] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._stopping = threading.Event()
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "FakeTwilio":
        if self._server is not None:
            return self
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # keep-alive handler threads must not block stop()
        self._stopping.clear()
        self._server = server
        host, port = server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeTwilio", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # releases hangs
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

    def __enter__(self) -> "FakeTwilio":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ setup

    def add_account(self, sid: str, token: str, senders: list[str]) -> None:
        with self._lock:
            self._accounts[sid] = _Account(sid, token, list(senders))

    def script(self, *responses: Scripted, to: str | None = None) -> None:
        for response in responses:
            if not isinstance(response, (ScriptedError, Hang, Drop)):
                raise TypeError(f"not a scripted response: {response!r}")
        with self._lock:
            if to is None:
                self._scripts.extend(responses)
            else:
                self._scripts_by_to.setdefault(to, collections.deque()).extend(responses)

    def release_hangs(self) -> None:
        """Release every request currently held by a Hang (later hangs hold again)."""
        with self._lock:
            old, self._release = self._release, threading.Event()
        old.set()

    def add_media(self, account_sid: str, content: bytes, content_type: str) -> str:
        path = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{_sid('MM')}/Media/{_sid('ME')}"
        with self._lock:
            self._media[path] = _Media(account_sid, bytes(content), content_type)
        return self.base_url + path

    def reset(self) -> None:
        """Clear recorded requests, sent, scripts and rate state.

        Accounts, media and the message store (for status callbacks) are kept.
        """
        with self._lock:
            self.requests.clear()
            self.sent.clear()
            self._scripts.clear()
            self._scripts_by_to.clear()
            self._buckets.clear()

    # ------------------------------------------------------------------ status callbacks

    def message(self, sid: str) -> dict:
        """The current state of a created message (as GET would return it)."""
        with self._lock:
            return json.loads(json.dumps(self._messages[sid].resource))

    def status_callback(self, sid: str, status: str, error_code: str | None = None) -> tuple[str, dict[str, str]]:
        with self._lock:
            try:
                msg = self._messages[sid]
            except KeyError:
                raise KeyError(f"no message {sid} was created on this fake") from None
            if not msg.status_callback:
                raise LookupError(f"message {sid} was created without a StatusCallback")
            res = msg.resource
            res["status"] = status
            if error_code is not None:
                res["error_code"] = int(error_code) if str(error_code).isdigit() else error_code
            res["date_updated"] = _rfc2822(datetime.datetime.now(datetime.timezone.utc))
            if status in ("sent", "delivered", "read") and res.get("date_sent") is None:
                res["date_sent"] = res["date_updated"]
            to = res["to"]
            params = {
                "SmsSid": sid,
                "SmsStatus": status,
                "MessageStatus": status,
                "MessageSid": sid,
                "AccountSid": res["account_sid"],
                "From": res["from"],
                "To": to,
                "ApiVersion": API_VERSION,
            }
            if ":" in to:
                prefix, _, address = to.partition(":")
                params["ChannelPrefix"] = prefix
                params["ChannelToAddress"] = address
                params["StructuredMessage"] = "false"
            if error_code is not None:
                params["ErrorCode"] = str(error_code)
            return msg.status_callback, params

    def signature(self, url: str, params: dict[str, str], token: str) -> str:
        from twilio.request_validator import RequestValidator

        return RequestValidator(token).compute_signature(url, params)

    def post_status_callback(self, sid: str, status: str, error_code: str | None = None) -> int:
        import requests

        url, params = self.status_callback(sid, status, error_code)
        with self._lock:
            token = self._accounts[self._messages[sid].resource["account_sid"]].token
        response = requests.post(
            url,
            data=params,
            headers={
                "X-Twilio-Signature": self.signature(url, params, token),
                "User-Agent": "TwilioProxy/1.1",
                "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            },
            timeout=10,
            allow_redirects=False,
        )
        return response.status_code

    # ------------------------------------------------------------------ request handling

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _check_auth(self, req: RecordedRequest, account_sid: str) -> _Answer | None:
        with self._lock:
            account = self._accounts.get(account_sid)
            if req.auth is None:
                return _Answer.error(401, 20003, "Authenticate")
            user, password = req.auth
            if account is not None:
                if user == account.sid and _same(password, account.token):
                    return None
                return _Answer.error(401, 20003, "Authenticate")
            authed = self._accounts.get(user)
            right_looking = user == account_sid or (
                authed is not None and _same(password, authed.token)
            )
        if right_looking:
            return _Answer.error(404, 20404, f"The requested resource {req.path} was not found")
        return _Answer.error(401, 20003, "Authenticate")

    def _handle(self, req: RecordedRequest):
        """Returns an _Answer, _DROP, or ("hang", Hang, _Answer)."""
        m = _ACCOUNT_PATH_RE.match(req.path)
        if not m:
            return _Answer.error(404, 20404, f"The requested resource {req.path} was not found")
        account_sid, rest = m.group("account"), m.group("rest") or ""
        denied = self._check_auth(req, account_sid)
        if denied is not None:
            return denied

        if _MESSAGES_RE.match(rest):
            if req.method == "POST":
                return self._create_message(req, account_sid)
            return _Answer.error(405, 20004, "Method not allowed")
        m = _MESSAGE_RE.match(rest)
        if m and req.method == "GET":
            with self._lock:
                msg = self._messages.get(m.group("sid"))
                if msg is not None and msg.resource["account_sid"] == account_sid:
                    return _Answer.json(200, msg.resource)
        m = _MEDIA_RE.match(rest)
        if m and req.method in ("GET", "HEAD"):
            with self._lock:
                media = self._media.get(req.path)
            if media is not None and media.account_sid == account_sid:
                return _Answer(200, media.content, content_type=media.content_type)
        return _Answer.error(404, 20404, f"The requested resource {req.path} was not found")

    def _next_script(self, to: str | None) -> Scripted | None:
        with self._lock:
            if to is not None and self._scripts_by_to.get(to):
                return self._scripts_by_to[to].popleft()
            if self._scripts:
                return self._scripts.popleft()
        return None

    def _create_message(self, req: RecordedRequest, account_sid: str):
        scripted = self._next_script(req.param("To"))
        if isinstance(scripted, ScriptedError):
            headers = {}
            if scripted.retry_after is not None:
                ra = scripted.retry_after
                headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            return _Answer.error(scripted.status, scripted.code, scripted.message, headers=headers)
        if isinstance(scripted, Drop):
            if scripted.created and self._validate(req, account_sid) is None:
                self._store_message(req, account_sid)
            return _DROP
        if isinstance(scripted, Hang):
            invalid = self._validate(req, account_sid)
            answer = invalid or _Answer.json(201, self._store_message(req, account_sid))
            return ("hang", scripted, answer)

        invalid = self._validate(req, account_sid)
        if invalid is not None:
            return invalid
        if self.rate_per_second is not None:
            key = (account_sid, req.param("From") or "")
            with self._lock:
                bucket = self._buckets.get(key)
                if bucket is None:
                    bucket = self._buckets[key] = _Bucket(self.rate_per_second)
                allowed = bucket.take()
            if not allowed:
                return _Answer.error(429, 20429, "Too Many Requests", headers={"Retry-After": "1"})
        return _Answer.json(201, self._store_message(req, account_sid))

    def _validate(self, req: RecordedRequest, account_sid: str) -> _Answer | None:
        to = req.param("To")
        from_ = req.param("From")
        body = req.param("Body")
        media_urls = req.params.get("MediaUrl", [])
        content_sid = req.param("ContentSid")
        with self._lock:
            senders = list(self._accounts[account_sid].senders)
        if not to:
            return _Answer.error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return _Answer.error(400, 21603, "A 'From' phone number is required.")
        if from_ not in senders:
            return _Answer.error(400, 63007, "Twilio could not find a Channel with the specified From address")
        if not _TO_RE.match(to):
            return _Answer.error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not body and not media_urls and not content_sid:
            return _Answer.error(400, 21619, "A text message body or media urls must be specified.")
        if body and len(body) > MAX_BODY_LENGTH:
            return _Answer.error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if len(media_urls) > MAX_MEDIA:
            return _Answer.error(400, 21623, "Number of media files exceeds allowed limit")
        for url in media_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return _Answer.error(400, 21620, f"Media urls: {url} are invalid. Please use absolute urls.")
        variables = req.param("ContentVariables")
        if variables is not None:
            try:
                ok = isinstance(json.loads(variables), dict)
            except ValueError:
                ok = False
            if not ok:
                return _Answer.error(400, 21656, "The ContentVariables Parameter is invalid.")
        return None

    def _store_message(self, req: RecordedRequest, account_sid: str) -> dict:
        sid = _sid("SM")
        now = _rfc2822(datetime.datetime.now(datetime.timezone.utc))
        base = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
        resource = {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": req.param("Body") or "",
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": req.param("From"),
            "messaging_service_sid": None,
            "num_media": str(len(req.params.get("MediaUrl", []))),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": req.param("To"),
            "uri": f"{base}.json",
        }
        with self._lock:
            self._messages[sid] = _Message(json.loads(json.dumps(resource)), req.param("StatusCallback"))
            self.sent.append(resource)
        return resource


class _Handler(FakeHandler):
    fake: FakeTwilio
    server_version = "FakeTwilio"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
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
        if body and ctype in ("", "application/x-www-form-urlencoded"):
            for key, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
        auth = None
        header = self.headers.get("Authorization") or ""
        if header[:6].lower() == "basic ":
            try:
                user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
                if sep:
                    auth = (user, password)
            except (binascii.Error, UnicodeDecodeError):
                auth = None
        return RecordedRequest(
            method=self.command,
            path=parts.path,
            params=params,
            auth=auth,
            headers=Headers(self.headers.items()),
            query=parts.query,
            body=body,
        )

    def _dispatch(self) -> None:
        fake = self.fake
        req = self._read_request()
        fake._record(req)
        try:
            result = fake._handle(req)
        except Exception as exc:  # never kill the handler; answer like Twilio would
            result = _Answer.error(500, 20500, f"Internal Server Error ({type(exc).__name__}: {exc})")
        if result is _DROP:
            self._drop()
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

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, answer: _Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.send_header("Twilio-Request-Id", _sid("RQ"))
            self.send_header("Twilio-Request-Duration", "0.010")
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:  # client gave up (timeout) or the fake is stopping
            self.close_connection = True
