"""Helpers for the security tests: routes walked from the URL configuration, an HTML checker for
inert customer content, and listening sockets that record every connection made to them."""

import re
import socket
import sys
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern
from twilio.request_validator import RequestValidator

from tests import factories

# Routes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    route: str  # "conversations/<int:conversation_id>/send/" (regex routes keep their regex)
    name: str  # "inbox:send", "" when unnamed
    callback: object
    params: dict  # parameter name -> converter class name ("IntConverter", ...)
    regex: bool = False

    @property
    def module(self) -> str:
        return getattr(self.callback, "__module__", "")

    @property
    def view_class(self):
        return getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)

    @property
    def is_webhook(self) -> bool:
        return self.route.startswith("webhooks/")

    @property
    def is_admin(self) -> bool:
        return self.route.startswith("admin/")

    def url(self, values: dict) -> str:
        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda match: str(values[match.group(1)]), self.route)


def all_routes() -> list[Route]:
    """Every URL pattern of the project, depth first, with its full route and parameters."""
    routes: list[Route] = []

    def walk(resolver: URLResolver, prefix: str, namespace: str, params: dict, regex: bool):
        for entry in resolver.url_patterns:
            pattern = entry.pattern
            is_regex = regex or not isinstance(pattern, RoutePattern)
            converters = {name: type(conv).__name__ for name, conv in getattr(pattern, "converters", {}).items()}
            text = prefix + str(pattern)
            if isinstance(entry, URLResolver):
                inner = ":".join(part for part in (namespace, entry.namespace or "") if part) if entry.namespace else namespace
                walk(entry, text, inner, {**params, **converters}, is_regex)
            elif isinstance(entry, URLPattern):
                name = f"{namespace}:{entry.name}" if namespace and entry.name else (entry.name or "")
                routes.append(Route(text, name, entry.callback, {**params, **converters}, is_regex))

    walk(get_resolver(), "", "", {}, False)
    return routes


# HTML ------------------------------------------------------------------------------------

URL_ATTRIBUTES = {
    "href", "src", "action", "formaction", "xlink:href", "poster", "background", "data", "srcdoc", "ws-connect",
    "hx-get", "hx-post", "hx-put", "hx-patch", "hx-delete", "cite", "longdesc", "srcset", "ping",
}
FORBIDDEN_TAGS = {
    "iframe", "frame", "frameset", "object", "embed", "applet", "base", "animate", "set", "animatetransform",
    "animatemotion", "foreignobject", "math", "style", "template", "portal", "xml", "import",
}
BAD_SCHEMES = ("javascript:", "vbscript:", "livescript:")


def _squash(value: str) -> str:
    """What a browser sees as a URL scheme: control characters and whitespace dropped."""
    return "".join(ch for ch in value if ord(ch) > 0x20 and ch not in "\u00a0\u200b\u200c\u200d\ufeff").lower()


class Document(HTMLParser):
    """The elements (tag, attributes) of an HTML document or fragment, and its text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text_parts: list[str] = []
        self.script_bodies: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag.lower(), {name.lower(): value or "" for name, value in attrs}))
        self._in_script = tag.lower() == "script"

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_bodies.append(data)
        else:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


def executable_parts(html: str, *, marker: str = "") -> list[str]:
    """Everything in `html` that a browser (or htmx) could execute. Our own markup passes: scripts
    come from /static/, no inline handlers, no `javascript:` URLs. Attributes that carry `marker`
    (a string only the test's payloads contain) may only be plain-text ones."""
    problems = []
    document = Document(html)
    for body in document.script_bodies:
        if body.strip():
            problems.append(f"inline script: {body[:80]!r}")
    for tag, attrs in document.elements:
        if tag in FORBIDDEN_TAGS:
            problems.append(f"<{tag}> {attrs}")
        if tag == "script" and not attrs.get("src", "").startswith("/static/"):
            problems.append(f"script not from /static/: {attrs}")
        if tag == "meta" and "http-equiv" in attrs:
            problems.append(f"<meta http-equiv> {attrs}")
        if tag == "link" and attrs.get("rel") not in ("stylesheet", "icon"):
            problems.append(f"<link> {attrs}")
        for name, value in attrs.items():
            squashed = _squash(value)
            if name.startswith("on") or name.startswith(("hx-on", "data-hx-on")):
                problems.append(f"handler {name} on <{tag}>")
            if name in URL_ATTRIBUTES and squashed.startswith(BAD_SCHEMES):
                problems.append(f"{name}={value!r} on <{tag}>")
            if name in URL_ATTRIBUTES and squashed.startswith("data:") and not (tag == "link" and attrs.get("rel") == "icon"):
                problems.append(f"data: URL {name} on <{tag}>")
            if name == "style" and any(bad in squashed for bad in ("expression(", "javascript:", "url(", "behavior:")):
                problems.append(f"style {value!r} on <{tag}>")
            # A same-origin path may carry escaped text (an attachment's file name): only its
            # scheme could make it code, checked above.
            same_origin_path = name in URL_ATTRIBUTES and value.startswith("/") and not value.startswith("//")
            if marker and marker.lower() in value.lower() and name not in TEXT_ATTRIBUTES and not same_origin_path:
                problems.append(f"payload reached attribute {name} on <{tag}>: {value!r}")
            if marker and marker.lower() in name:
                problems.append(f"payload became an attribute name {name!r} on <{tag}>")
        if marker and marker.lower() in tag:
            problems.append(f"payload became a tag <{tag}>")
    return problems


# Attributes whose value is only ever text to the browser (escaped customer text may sit there).
TEXT_ATTRIBUTES = {"alt", "title", "aria-label", "value", "placeholder", "datetime", "download"}


# Sockets ---------------------------------------------------------------------------------


@dataclass
class Trap:
    """A listening socket that records every connection made to it (and answers nothing)."""

    host: str = "127.0.0.1"
    connections: list = field(default_factory=list)

    def __post_init__(self):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, address = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(address)
            conn.close()

    def close(self):
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def trap():
    trap = Trap()
    yield trap
    trap.close()


@pytest.fixture
def trap6():
    """The same on ::1 (skipped where the machine has no IPv6 loopback)."""
    try:
        trap = Trap(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    yield trap
    trap.close()


class _ConnectAudit:
    """Every socket.connect() made by Python code in this process (sys.audit), while recording."""

    def __init__(self):
        self.recording: list | None = None
        sys.addaudithook(self._hook)

    def _hook(self, event, args):
        if event == "socket.connect" and self.recording is not None:
            address = args[1]
            if isinstance(address, tuple):
                self.recording.append((str(address[0]), int(address[1])))


_AUDIT = _ConnectAudit()  # audit hooks cannot be removed: one per process, idle unless recording


@pytest.fixture
def connects():
    """The (host, port) of every outgoing connection opened while the test runs."""
    _AUDIT.recording = []
    yield _AUDIT.recording
    _AUDIT.recording = None


# Webhooks --------------------------------------------------------------------------------


def twilio_params(**overrides) -> dict[str, str]:
    params = {
        "SmsMessageSid": "SM" + "1" * 32,
        "NumMedia": "0",
        "ProfileName": "Siti",
        "MessageType": "text",
        "SmsSid": "SM" + "1" * 32,
        "WaId": "60123456789",
        "SmsStatus": "received",
        "Body": "Hi, is my order on its way?",
        "To": factories.TEST_SENDER,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": "SM" + "1" * 32,
        "AccountSid": factories.TEST_ACCOUNT_SID,
        "From": "whatsapp:+60123456789",
        "ApiVersion": "2010-04-01",
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


def sign(url: str, params: dict, token: str = factories.TEST_AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post_form(client, path: str, params: dict, signature: str | None, body: str | None = None):
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    return client.post(
        path, data=body if body is not None else urlencode(params), content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


def public_url(path: str) -> str:
    return settings.PUBLIC_BASE_URL + path
