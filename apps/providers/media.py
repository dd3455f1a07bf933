"""Fetching provider media safely: only from the provider's hosts, capped in size and time."""

from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings


class MediaRefused(Exception):
    """The URL or the body is not one we will fetch or keep; the reason is for the event log."""


def host_allowed(url: str, allowed_hosts: list[str]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        return False
    return any(host == allowed or host.endswith("." + allowed) for allowed in allowed_hosts)


def fetch_limited(
    url: str, *, allowed_hosts: list[str], auth=None, max_bytes: int | None = None, max_redirects: int = 3
) -> tuple[bytes, str]:
    """GET a provider media URL. Every hop, redirects included, must be on an allowed host:
    a URL elsewhere (loopback, private ranges, metadata services) is refused before connecting."""
    max_bytes = max_bytes or settings.MEDIA_DOWNLOAD_MAX_BYTES
    timeout = (settings.PROVIDER_CONNECT_TIMEOUT, settings.PROVIDER_READ_TIMEOUT)
    for _ in range(max_redirects + 1):
        if not host_allowed(url, allowed_hosts):
            raise MediaRefused(f"Media host not allowed: {urlsplit(url).hostname or url!r}")
        with requests.get(url, auth=auth, timeout=timeout, stream=True, allow_redirects=False) as response:
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                # Credentials go to the provider only, never to the CDN it redirects to.
                auth = None
                continue
            if response.status_code != 200:
                raise MediaRefused(f"Media download answered HTTP {response.status_code}")
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise MediaRefused(f"Media too large: {declared} bytes (limit {max_bytes})")
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise MediaRefused(f"Media too large: over {max_bytes} bytes")
            content_type = response.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()
            return bytes(body), content_type
    raise MediaRefused("Too many redirects while fetching media")
