"""Shows times in the agent's own time zone: inbox.js stores the browser's zone in a `tz` cookie."""

import zoneinfo
from urllib.parse import unquote

from django.utils import timezone

COOKIE = "tz"


class AgentTimezoneMiddleware:
    # Sync-only on purpose: see CurrentOrganizationMiddleware.
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        zone = zone_from_name(request.COOKIES.get(COOKIE, ""))
        if zone is not None:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def zone_from_name(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The browser's time zone from the `tz` cookie (plain or percent-encoded), or None."""
    name = unquote(name or "").strip()
    if not name or len(name) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None
