"""`/webhooks/meta/`: the one webhook of the Meta app (Messenger, Instagram, WhatsApp Cloud).

GET is Meta's subscription check (`hub.challenge` back only for our verify token). POST is
verified once for the whole body (`X-Hub-Signature-256`, the app secret), split into events,
each routed to its channel by the page id, Instagram account id or phone number id it names,
and all of them recorded in one transaction before we answer 200. Events for an id we do not
know are kept (and logged), never dropped.
"""

import json
import logging

from django.db import InterfaceError, OperationalError, transaction
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.providers import events
from apps.providers.kinds.base import signatures_equal
from apps.providers.kinds.meta import adapter as meta
from apps.providers.models import Channel, MetaAppConfig

log = logging.getLogger(__name__)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def meta_webhook(request):
    try:
        app = MetaAppConfig.current()
        if request.method == "GET":
            return _verify_subscription(request, app)
        return _receive(request, app)
    except (OperationalError, InterfaceError):
        log.error("meta webhook not recorded: database unavailable")
        return HttpResponse("Try again later.", status=503, content_type="text/plain", headers={"Retry-After": "5"})


def _verify_subscription(request, app: MetaAppConfig) -> HttpResponse:
    mode = request.GET.get("hub.mode", "")
    token = request.GET.get("hub.verify_token", "")
    challenge = request.GET.get("hub.challenge", "")
    if mode == "subscribe" and app.verify_token and signatures_equal(token, app.verify_token):
        return HttpResponse(challenge, content_type="text/plain")
    log.warning("meta webhook verification refused (mode=%s)", mode or "-")
    return HttpResponse("Verification failed.", status=403, content_type="text/plain")


def _receive(request, app: MetaAppConfig) -> HttpResponse:
    body = request.body
    if not meta.signature_valid(app.app_secret, body, request.headers.get(meta.SIGNATURE_HEADER, "")):
        # Never the body or the signature: they may carry customer data or help forge one.
        log.warning("meta webhook rejected: bad or missing signature")
        return HttpResponse("Invalid signature.", status=403, content_type="text/plain")
    try:
        routed = meta.split_payload(json.loads(body))
    except (UnicodeDecodeError, ValueError) as exc:
        log.warning("meta webhook rejected: malformed body: %s", exc)
        return HttpResponse("Malformed webhook.", status=400, content_type="text/plain")
    _record(routed)
    return HttpResponse("EVENT_RECEIVED", content_type="text/plain")


def _record(routed: list[meta.RoutedEvent]) -> None:
    """Every event in one transaction, grouped by destination; returns after the commit."""
    groups: dict[tuple[str, str], list] = {}
    for item in routed:
        groups.setdefault((item.channel_kind, item.destination), []).append(item.event)
    channels = {
        (channel.kind, channel.address): channel
        for channel in Channel.objects.select_related("organization").filter(
            kind__in={kind for kind, _ in groups}, address__in={address for _, address in groups if address}
        ).order_by("-pk")
    }
    with transaction.atomic():
        for (kind, destination), batch in groups.items():
            channel = channels.get((kind, destination))
            events.event_record(channel=channel, events=batch, provider="meta", destination=destination or "-")
