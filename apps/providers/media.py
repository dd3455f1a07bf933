"""Fetching provider media safely: only from the provider's hosts, capped in size and time.

Three checks stand between a URL a webhook named and a connection:
1. the host (of every hop, redirects included) is one of the provider's hosts;
2. the address we are about to connect to, resolved once at connect time, is a public one
   (loopback, private, link-local, metadata and other reserved ranges are refused), so a name
   that resolves, or is rebound, to an internal address never gets a connection;
3. the body stops at `max_bytes` (declared or streamed) and the whole download at a deadline.

An address literal listed in `allowed_hosts` (a local fake in tests, a private mirror) is trusted
as written; a name must always resolve to public addresses.
"""

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CHUNK = 64 * 1024


class MediaRefused(Exception):
    """The URL or the body is not one we will fetch or keep; the reason is for the event log."""


def host_allowed(url: str, allowed_hosts: list[str]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        return False
    return any(host == allowed or host.endswith("." + allowed) for allowed in allowed_hosts)


def address_public(address: str) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local
    (169.254.169.254), shared, multicast, reserved and unspecified ones, IPv4-mapped included."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


# The provider's credentials never show among a debug page's local variables (nor the URL: the
# Telegram Bot API's file URLs carry the bot's token).
@sensitive_variables("auth", "url")
def fetch_limited(
    url: str,
    *,
    allowed_hosts: list[str],
    auth=None,
    max_bytes: int | None = None,
    max_redirects: int = 3,
    deadline: float | None = None,
) -> tuple[bytes, str]:
    """GET a provider media URL. Every hop, redirects included, must be on an allowed host and
    connect to a public address: anything else (loopback, private ranges, metadata services) is
    refused before a connection is opened. The download must finish within `deadline` seconds
    (settings.MEDIA_DOWNLOAD_DEADLINE), however slowly the body trickles in."""
    max_bytes = max_bytes or settings.MEDIA_DOWNLOAD_MAX_BYTES
    deadline_at = time.monotonic() + (deadline or settings.MEDIA_DOWNLOAD_DEADLINE)
    with requests.Session() as session:
        # No proxy from the environment: the connection goes to the address we checked.
        session.trust_env = False
        adapter = _CheckedAddressAdapter(_trusted_literals(allowed_hosts))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        for _ in range(max_redirects + 1):
            if not host_allowed(url, allowed_hosts):
                raise MediaRefused(f"Media host not allowed: {urlsplit(url).hostname or url!r}")
            read_timeout = min(settings.PROVIDER_READ_TIMEOUT, _remaining(deadline_at))
            try:
                response = session.get(
                    url, auth=auth, timeout=(settings.PROVIDER_CONNECT_TIMEOUT, read_timeout), stream=True,
                    allow_redirects=False,
                )
            except requests.Timeout:
                raise MediaRefused("Media download timed out") from None
            with response:
                if response.is_redirect and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    # Credentials go to the provider only, never to the CDN it redirects to.
                    auth = None
                    continue
                if response.status_code != 200:
                    raise MediaRefused(f"Media download answered HTTP {response.status_code}")
                declared = response.headers.get("Content-Length") or "0"
                if not declared.isdigit():
                    raise MediaRefused("Media download declared an invalid Content-Length")
                if int(declared) > max_bytes:
                    raise MediaRefused(f"Media too large: {declared} bytes (limit {max_bytes})")
                body = _read_body(response, max_bytes=max_bytes, deadline_at=deadline_at)
                content_type = response.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()
                return body, content_type
    raise MediaRefused("Too many redirects while fetching media")


def _remaining(deadline_at: float) -> float:
    remaining = deadline_at - time.monotonic()
    if remaining <= 0:
        raise MediaRefused("Media download took too long")
    return remaining


def _read_body(response: requests.Response, *, max_bytes: int, deadline_at: float) -> bytes:
    """Read one recv at a time, each bounded by what is left of the deadline: a body that
    trickles in a byte at a time cannot hold a worker past it."""
    raw = response.raw
    body = bytearray()
    while True:
        remaining = _remaining(deadline_at)
        sock = getattr(raw.connection, "sock", None)
        if sock is not None:
            sock.settimeout(min(settings.PROVIDER_READ_TIMEOUT, remaining))
        try:
            chunk = raw.read1(CHUNK, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if time.monotonic() >= deadline_at or isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)):
                raise MediaRefused("Media download took too long") from None
            raise MediaRefused(f"Media download broke off: {type(exc).__name__}") from None
        if not chunk:
            return bytes(body)
        body.extend(chunk)
        if len(body) > max_bytes:
            raise MediaRefused(f"Media too large: over {max_bytes} bytes")


def _trusted_literals(allowed_hosts: list[str]) -> frozenset[str]:
    trusted = set()
    for host in allowed_hosts:
        try:
            trusted.add(str(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            continue
    return frozenset(trusted)


def _checked_address(host: str, port: int, trusted: frozenset[str]) -> str:
    """The address to connect to for `host`: resolved once; every address it resolves to must be
    public (a name with one internal address is refused outright)."""
    host = host.strip("[]")
    try:
        literal = str(ipaddress.ip_address(host))
    except ValueError:
        literal = None
    if literal is not None and literal in trusted:
        return literal
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise MediaRefused(f"Media host does not resolve: {host}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    refused = [address for address in addresses if not address_public(address)]
    if not addresses or refused:
        raise MediaRefused(f"Media host {host} resolves to a non-public address")
    return addresses[0]


class _CheckedAddressMixin:
    """A urllib3 connection that connects only to the address `_checked_address` returned,
    keeping the host name for SNI, certificate checks and the Host header."""

    trusted: frozenset[str] = frozenset()

    def _new_conn(self):
        address = _checked_address(self._dns_host, self.port, self.trusted)
        name = self._dns_host
        self._dns_host = address
        try:
            return super()._new_conn()
        finally:
            self._dns_host = name


class _CheckedAddressAdapter(HTTPAdapter):
    def __init__(self, trusted: frozenset[str]):
        self.trusted = trusted
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        extra = {"trusted": self.trusted}
        http = type("CheckedHTTPConnection", (_CheckedAddressMixin, HTTPConnection), extra)
        https = type("CheckedHTTPSConnection", (_CheckedAddressMixin, HTTPSConnection), extra)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("CheckedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("CheckedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }
