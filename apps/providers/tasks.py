"""Inbound event processing, its sweep, and the sandbox channel's simulated customer."""

import json
import logging
import random

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections, connection

from apps.providers import inbound

log = logging.getLogger(__name__)

PROCESS_MAX_RETRIES = 5
SANDBOX_REPLIES = (
    "Thanks! You said: “{text}”",
    "Got it 👍 You said: “{text}”",
    "Thank you for the quick answer! (You said: “{text}”)",
    "Great, that helps. You said: “{text}”",
    "Perfect, thanks! You said: “{text}”",
)


@shared_task(bind=True, acks_late=True, max_retries=PROCESS_MAX_RETRIES)
def inbound_event_process_task(self, event_id: int) -> None:
    try:
        inbound.event_process(event_id)
    except Exception as exc:
        if self.request.is_eager:
            # Eager Celery would retry synchronously, inside the webhook request; the sweep
            # (or a replay from the admin) tries again later instead. The event records the error.
            log.warning("inbound event %s failed; left for the sweep", event_id)
            return
        # Backoff with jitter: 5 s, 10 s, 20 s … capped at 10 minutes.
        countdown = min(600, 5 * 2**self.request.retries) * random.uniform(0.8, 1.2)
        raise self.retry(exc=exc, countdown=countdown) from None


@shared_task
def inbound_event_sweep_task() -> int:
    """Beat: re-enqueue events whose task was lost or failed, and deferred statuses whose
    message is known by now."""
    ids = inbound.event_ids_due()
    for event_id in ids:
        inbound_event_process_task.delay(event_id)
    if ids:
        log.info("inbound sweep re-enqueued %d event(s)", len(ids))
    return len(ids)


@shared_task(acks_late=True)
def sandbox_simulate_task(channel_uuid: str, step: str, external_id: str, to: str, text: str) -> list[int]:
    """One step of the sandbox's simulated customer after a send: "delivered", "read" or
    "reply". It builds the signed body the sandbox provider would post and hands it to the same
    code as the webhook view, so the demo exercises the real inbound path."""
    from apps.providers import selectors
    from apps.providers.adapters import sandbox
    from apps.providers.adapters.base import WebhookRequest

    channel = selectors.channel_get_by_uuid(uuid=channel_uuid)
    if channel is None or channel.kind != "sandbox":
        return []
    secret = (channel.secrets or {}).get("webhook_secret", "")
    if not secret:
        log.warning("sandbox channel %s has no webhook secret; nothing simulated", channel.pk)
        return []
    if step == "reply":
        reply = random.choice(SANDBOX_REPLIES).format(text=_shorten(text))
        payload = {"type": "message", "id": sandbox.new_id(), "from": to, "text": reply}
    else:
        payload = {"type": "status", "id": f"{external_id}:{step}", "message_id": external_id, "status": step}
    body = json.dumps(payload).encode()
    request = WebhookRequest(
        url=f"{settings.PUBLIC_BASE_URL}/webhooks/sandbox/{channel.uuid}/",
        headers={sandbox.SIGNATURE_HEADER: sandbox.sign(secret, body), "Content-Type": "application/json"},
        body=body,
    )
    return inbound.webhook_accept(channel=channel, request=request, kind=payload["type"])


def sandbox_simulate_in_thread(*args) -> None:
    """Eager mode: run a simulation step from a timer thread, with its own connection."""
    close_old_connections()
    try:
        sandbox_simulate_task(*args)
    except Exception:  # noqa: BLE001 - a demo nicety must never take the process down
        log.warning("sandbox simulation step failed", exc_info=True)
    finally:
        connection.close()


def _shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@shared_task(acks_late=True, ignore_result=True)
def contact_enrich_task(contact_id: int, channel_id: int) -> None:
    """A new Messenger / Instagram sender: their name and picture from the Graph API, once.
    Safe to run twice (a contact with a name is left alone); a failure is logged and leaves the
    contact as it was, usable."""
    from apps.contacts.models import Contact, ContactIdentity
    from apps.providers import registry
    from apps.providers.adapters.base import SendError
    from apps.providers.models import Channel
    from apps.providers.policies import policy_for

    channel = Channel.objects.filter(pk=channel_id).first()
    contact = Contact.objects.filter(pk=contact_id).first()
    if channel is None or contact is None or contact.organization_id != channel.organization_id or contact.name:
        return
    identity = (
        ContactIdentity.objects.filter(contact=contact, kind=policy_for(channel.kind).identity_kind)
        .order_by("pk")
        .first()
    )
    if identity is None:
        return
    try:
        profile = registry.adapter_for(channel).profile(identity.address)
    except (SendError, LookupError) as exc:
        log.warning("contact %s not enriched from channel %s: %s", contact_id, channel_id, getattr(exc, "code", "") or type(exc).__name__)
        return
    avatar = profile.get("avatar_url", "")
    max_length = Contact._meta.get_field("avatar_url").max_length
    fields = {"name": profile.get("name", "")[:200]}
    if avatar.startswith("https://") and len(avatar) <= max_length:
        fields["avatar_url"] = avatar
    fields = {key: value for key, value in fields.items() if value}
    if fields:
        # Only while nobody named the contact meanwhile.
        Contact.objects.filter(pk=contact_id, name="").update(**fields)
