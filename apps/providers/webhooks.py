"""Per-channel provider webhooks: `POST /webhooks/<hook>/<channel uuid>/[<sub>/]`.

The only CSRF-exempt views besides the app-level ones a kind declares (Meta's), and each one
verifies a signature first. The URL names the channel; the channel's kind (the catalog) says
which hooks it has, what each carries (`Webhook.event_kind`) and how the provider wants to be
answered. `webhook_accept` verifies the raw request with the kind's adapter, splits it into
events and records them (`events.event_record`) in one transaction, and returns after the
commit: the provider hears 200 only then. A database that is down answers 503, so the provider
retries; nothing it sent is lost.
"""

import logging
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import Http404, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.providers import catalog, events, selectors
from apps.providers.kinds.base import Adapter, Webhook, WebhookRequest
from apps.providers.models import Channel

log = logging.getLogger(__name__)


class SignatureInvalid(Exception):
    """The webhook is not signed by whom it claims; nothing was stored."""


def webhook_accept(*, channel: Channel, request: WebhookRequest, kind: str, adapter: Adapter | None = None) -> list[int]:
    """Verify, split and record a webhook for `channel`. Returns the ids of the NEW events.

    Raises SignatureInvalid (answer 403) or ValueError for a body that is not the provider's
    format (answer 400). Returns after the commit: the provider may be told 200 then.
    `adapter`: the channel's adapter when the caller has it already (`webhook_target`)."""
    adapter = adapter if adapter is not None else catalog.adapter_for(channel)
    if not adapter.verify_signature(request):
        raise SignatureInvalid(f"Invalid webhook signature for channel {channel.uuid}")
    return events.event_record(channel=channel, events=adapter.split_webhook(request, kind=kind))


@csrf_exempt
@require_POST
def channel_webhook(request, hook: str, channel_uuid, sub: str = ""):
    channel_uuid = str(channel_uuid)
    spec = None
    try:
        webhook = WebhookRequest(
            url=settings.PUBLIC_BASE_URL + request.get_full_path(),
            headers=request.headers,
            body=request.body,
            params=_form_params(request),
        )
        for attempt in (1, 2):
            channel, adapter, spec = _hook(channel_uuid, hook=hook, sub=sub)
            try:
                webhook_accept(channel=channel, request=webhook, kind=spec.event_kind, adapter=adapter)
                break
            except IntegrityError:
                # The cached channel was deleted by another process within the cache's TTL.
                webhook_forget(channel_uuid)
                if attempt == 2:
                    raise
    except LookupError:
        # A channel whose kind has no adapter (yet) has no webhook.
        raise Http404("No such webhook.") from None
    except SignatureInvalid:
        # Never the body or the signature: they may carry customer data or help forge one.
        log.warning("webhook rejected: bad signature (hook=%s channel=%s)", hook, channel_uuid)
        return HttpResponse("Invalid signature.", status=403, content_type="text/plain")
    except ValueError as exc:
        kind = spec.event_kind if spec else "webhook"
        log.warning("webhook rejected: malformed %s body (hook=%s channel=%s): %s", kind, hook, channel_uuid, exc)
        return HttpResponse("Malformed webhook.", status=400, content_type="text/plain")
    except (OperationalError, InterfaceError):
        log.error("webhook not recorded: database unavailable (hook=%s channel=%s)", hook, channel_uuid)
        return HttpResponse("Try again later.", status=503, content_type="text/plain", headers={"Retry-After": "5"})
    return spec.answer() if spec.answer is not None else HttpResponse(status=200)


def _hook(channel_uuid: str, *, hook: str, sub: str) -> tuple[Channel, Adapter, Webhook]:
    """The channel a URL names, its adapter and the hook of its kind the URL is (else 404)."""
    target = webhook_target(channel_uuid)
    if target is None:
        raise Http404("No such webhook.")
    channel, adapter = target
    spec = next(
        (w for w in catalog.KINDS[channel.kind].webhooks if w.hook == hook and w.sub == sub and not w.app_level),
        None,
    )
    if spec is None:
        raise Http404("No such webhook.")
    return channel, adapter, spec


def _form_params(request) -> dict[str, list[str]]:
    content_type = (request.content_type or "").lower()
    if content_type not in ("", "application/x-www-form-urlencoded"):
        return {}
    return parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)


# The per-process channel cache ------------------------------------------------------------------

# Every webhook names its channel; loading it (and decrypting its token) was a fifth of a webhook's
# CPU. Config is read-mostly, so each process keeps the channel and its adapter briefly: after
# WEBHOOK_CACHE_SECONDS one query on `updated_at` says whether they still hold. A save in this
# process forgets the entry at once; other processes see it within the TTL. Nothing else is kept:
# what another process needs (the events) is in the database before we answer.
WEBHOOK_CACHE_SECONDS = 5.0
WEBHOOK_CACHE_MAX = 1000


@dataclass(frozen=True)
class _Cached:
    channel: Channel
    adapter: Adapter
    expires: float


_webhook_cache: dict[str, _Cached] = {}


def webhook_target(uuid: str) -> tuple[Channel, Adapter] | None:
    """The channel a webhook URL names and its adapter, or None. Raises LookupError for a kind
    without an adapter. The channel is shared between requests: read it, never change it."""
    now = time.monotonic()
    hit = _webhook_cache.get(uuid)
    if hit is not None:
        if now < hit.expires:
            return hit.channel, hit.adapter
        updated_at = Channel.objects.filter(uuid=uuid).values_list("updated_at", flat=True).first()
        if updated_at is not None and updated_at == hit.channel.updated_at:
            _webhook_cache[uuid] = _Cached(hit.channel, hit.adapter, now + WEBHOOK_CACHE_SECONDS)
            return hit.channel, hit.adapter
    channel = selectors.channel_get_by_uuid(uuid=uuid)
    if channel is None:
        _webhook_cache.pop(uuid, None)
        return None
    adapter = catalog.adapter_for(channel)
    # Adapters that also hold the Meta app's secret depend on a second row: not cached.
    if not catalog.KINDS[channel.kind].uses_meta_app:
        if len(_webhook_cache) >= WEBHOOK_CACHE_MAX:
            _webhook_cache.clear()
        _webhook_cache[uuid] = _Cached(channel, adapter, now + WEBHOOK_CACHE_SECONDS)
    return channel, adapter


def webhook_forget(uuid: str | None = None) -> None:
    """Drop one cached channel (or all): the next webhook loads it again."""
    if uuid is None:
        _webhook_cache.clear()
    else:
        _webhook_cache.pop(str(uuid), None)


@receiver(post_save, sender=Channel, dispatch_uid="providers.webhooks.webhook_forget.save")
@receiver(post_delete, sender=Channel, dispatch_uid="providers.webhooks.webhook_forget.delete")
def _channel_changed(sender, instance: Channel, **kwargs) -> None:
    # Cache invalidation only (this process); other processes notice updated_at within the TTL.
    webhook_forget(instance.uuid)
