"""Provider webhooks: the only CSRF-exempt views, and each one verifies a signature first.

Each view parses the raw request, hands it to `inbound.webhook_accept` (verify, split, record in
one transaction) and answers only after that commit. A database that is down answers 503, so
the provider retries; nothing it sent is lost.
"""

import logging
from urllib.parse import parse_qs

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.providers import inbound, registry
from apps.providers.adapters.base import WebhookRequest

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


@csrf_exempt
@require_POST
def twilio_message(request, channel_uuid):
    response = _receive(request, channel_uuid, provider="twilio", kind="message")
    # Twilio expects TwiML for a message webhook; an empty one sends no auto-reply.
    return response or HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_status(request, channel_uuid):
    return _receive(request, channel_uuid, provider="twilio", kind="status") or HttpResponse(status=204)


@csrf_exempt
@require_POST
def sandbox_webhook(request, channel_uuid):
    # The sandbox body says itself whether it is a message or a status.
    return _receive(request, channel_uuid, provider="sandbox", kind="message") or HttpResponse(status=204)


def _receive(request, channel_uuid, *, provider: str, kind: str) -> HttpResponse | None:
    """None when the events are recorded (the caller answers 200); else the error response."""
    try:
        webhook = WebhookRequest(
            url=settings.PUBLIC_BASE_URL + request.get_full_path(),
            headers=request.headers,
            body=request.body,
            params=_form_params(request),
        )
        try:
            _accept(str(channel_uuid), webhook, provider=provider, kind=kind)
        except IntegrityError:
            # The cached channel was deleted by another process within the cache's TTL.
            registry.webhook_forget(str(channel_uuid))
            _accept(str(channel_uuid), webhook, provider=provider, kind=kind)
    except LookupError:
        # A channel kind without an adapter yet (SMS, …) has no webhook.
        raise Http404("No such webhook.") from None
    except inbound.SignatureInvalid:
        # Never the body or the signature: they may carry customer data or help forge one.
        log.warning("webhook rejected: bad signature (provider=%s channel=%s)", provider, channel_uuid)
        return HttpResponse("Invalid signature.", status=403, content_type="text/plain")
    except ValueError as exc:
        log.warning("webhook rejected: malformed %s body (provider=%s channel=%s): %s", kind, provider, channel_uuid, exc)
        return HttpResponse("Malformed webhook.", status=400, content_type="text/plain")
    except (OperationalError, InterfaceError):
        log.error("webhook not recorded: database unavailable (provider=%s channel=%s)", provider, channel_uuid)
        return HttpResponse("Try again later.", status=503, content_type="text/plain", headers={"Retry-After": "5"})
    return None


def _accept(channel_uuid: str, webhook: WebhookRequest, *, provider: str, kind: str) -> None:
    target = registry.webhook_target(channel_uuid)
    if target is None or inbound.provider_for(target[0]) != provider:
        raise Http404("No such webhook.")
    channel, adapter = target
    inbound.webhook_accept(channel=channel, request=webhook, kind=kind, adapter=adapter)


def _form_params(request) -> dict[str, list[str]]:
    content_type = (request.content_type or "").lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        return {}
    return parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
