"""The sandbox channel: answers like a WhatsApp provider from inside the app, so the demo needs
no account. A send is "delivered", then "read", then the customer replies; every one of those
enters through the real inbound path (a signed webhook body, recorded, then processed).

Webhook format (JSON, signed with HMAC-SHA256 of the raw body in `X-Parley-Signature`):

    {"type": "message", "id": "SB…", "from": "+60123456789", "name": "Siti", "text": "Hello"}
    {"type": "status", "id": "SB…:delivered", "message_id": "SB…", "status": "delivered"}

A body may also be a list of such objects.

Two halves: the adapter (what Parley's pipeline talks to, no ORM) and the simulated provider
(`sandbox_simulate_task`), which plays the provider's part: it builds the signed webhook and
hands it to the same intake as the webhook view.
"""

import hashlib
import hmac
import json
import logging
import random
import secrets
import threading

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections, connection
from django.http import HttpResponse
from django.views.decorators.debug import sensitive_variables

from apps.providers.kinds import whatsapp
from apps.providers.kinds.base import (
    ChannelKind,
    Credential,
    InboundMessage,
    OutboundMessage,
    PermanentSendError,
    RawEvent,
    SendResult,
    SimulatedWebhook,
    StatusUpdate,
    Webhook,
    WebhookRequest,
    signatures_equal,
)
from apps.providers.media import MediaRefused

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Parley-Signature"
STATUSES = {"sent", "delivered", "read", "failed"}
# The simulated customer's steps after a send, in order (delays from settings.SANDBOX_DELAYS).
SIMULATED_STEPS = ("delivered", "read", "reply")
SANDBOX_REPLIES = (
    "Thanks! You said: “{text}”",
    "Got it 👍 You said: “{text}”",
    "Thank you for the quick answer! (You said: “{text}”)",
    "Great, that helps. You said: “{text}”",
    "Perfect, thanks! You said: “{text}”",
)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_id() -> str:
    return "SB" + secrets.token_hex(16)


def new_secret() -> str:
    return secrets.token_hex(32)


class SandboxAdapter:
    @sensitive_variables("secrets")
    def __init__(self, *, config: dict, secrets: dict, channel_uuid: str = "", **_):
        self.webhook_secret = (secrets.get("webhook_secret") or "").strip()
        self.channel_uuid = channel_uuid

    def missing_configuration(self) -> list[str]:
        return []

    # Inbound -----------------------------------------------------------------------------

    def verify_signature(self, request: WebhookRequest) -> bool:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature or not self.webhook_secret:
            return False
        return signatures_equal(sign(self.webhook_secret, request.body), signature)

    def split_webhook(self, request: WebhookRequest, *, kind: str) -> list[RawEvent]:
        try:
            payload = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("Not a sandbox webhook: the body is not JSON.") from None
        items = payload if isinstance(payload, list) else [payload]
        events = []
        for item in items:
            if not isinstance(item, dict) or not item.get("id"):
                raise ValueError("Not a sandbox webhook: every event needs an id.")
            event_kind = item.get("type") or kind
            if event_kind == "message":
                if not item.get("from"):
                    raise ValueError("A sandbox message needs a sender ('from').")
                events.append(RawEvent(event_id=str(item["id"]), kind="message", body=item, ref=str(item["id"])))
            elif event_kind == "status":
                if not item.get("message_id") or item.get("status") not in STATUSES:
                    raise ValueError("A sandbox status needs message_id and a known status.")
                events.append(RawEvent(event_id=str(item["id"]), kind="status", body=item, ref=str(item["message_id"])))
            else:
                raise ValueError(f"Unknown sandbox event type {event_kind!r}.")
        return events

    def normalize(self, event_kind: str, body: dict) -> InboundMessage | StatusUpdate | None:
        if event_kind == "status":
            return StatusUpdate(
                external_id=str(body["message_id"]),
                status=str(body["status"]),
                error_code=str(body.get("error_code") or ""),
                error_reason=str(body.get("error_reason") or ""),
            )
        text = str(body.get("text") or "")
        word = text.strip().lower()
        consent = "opt_out" if word == "stop" else "opt_in" if word == "start" else ""
        return InboundMessage(
            external_id=str(body["id"]),
            sender=str(body["from"]),
            sender_name=str(body.get("name") or ""),
            text=text,
            consent=consent,
        )

    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        raise MediaRefused("The sandbox does not fetch media.")

    # Outbound ----------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            raise PermanentSendError("Failed to send via the sandbox: the contact has no address.", code="no_address")
        external_id = new_id()
        text = message.text or ("[template]" if message.template_id else "[attachment]")
        simulate(channel_uuid=self.channel_uuid, external_id=external_id, to=message.to, text=text)
        return SendResult(external_id=external_id, status="sent")


# The simulated provider -----------------------------------------------------------------------


def simulate(*, channel_uuid: str, external_id: str, to: str, text: str) -> None:
    """Schedule the delivered, read and reply steps. Celery countdowns where a worker runs them;
    in eager mode (no Redis) Celery ignores countdowns, so a timer thread waits instead."""
    task = sandbox_simulate_task
    for step in SIMULATED_STEPS:
        delay = float(settings.SANDBOX_DELAYS.get(step, 0))
        args = (channel_uuid, step, external_id, to, text)
        if task.app.conf.task_always_eager:
            timer = threading.Timer(delay, sandbox_simulate_in_thread, args=args)
            timer.daemon = True
            timer.start()
        else:
            task.apply_async(args=args, countdown=delay)


@shared_task(acks_late=True, name="apps.providers.tasks.sandbox_simulate_task")
def sandbox_simulate_task(channel_uuid: str, step: str, external_id: str, to: str, text: str) -> list[int]:
    """One step of the simulated customer after a send: "delivered", "read" or "reply". It
    builds the signed body the sandbox provider would post and hands it to the same intake as
    the webhook view, so the demo exercises the real inbound path."""
    from apps.providers import selectors, webhooks  # the intake reads the catalog, which lists this module

    channel = selectors.channel_get_by_uuid(uuid=channel_uuid)
    if channel is None or channel.kind != SANDBOX.key:
        return []
    secret = (channel.secrets or {}).get("webhook_secret", "")
    if not secret:
        log.warning("sandbox channel %s has no webhook secret; nothing simulated", channel.pk)
        return []
    if step == "reply":
        reply = random.choice(SANDBOX_REPLIES).format(text=_shorten(text))
        payload = {"type": "message", "id": new_id(), "from": to, "text": reply}
    else:
        payload = {"type": "status", "id": f"{external_id}:{step}", "message_id": external_id, "status": step}
    body = json.dumps(payload).encode()
    request = WebhookRequest(
        url=f"{settings.PUBLIC_BASE_URL}/webhooks/sandbox/{channel.uuid}/",
        headers={SIGNATURE_HEADER: sign(secret, body), "Content-Type": "application/json"},
        body=body,
    )
    return webhooks.webhook_accept(channel=channel, request=request, kind=payload["type"])


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


def simulate_inbound(channel, *, sender: str, name: str, text: str, media_url: str = "") -> SimulatedWebhook:
    """The sandbox's own webhook for a message from `sender`, signed with the channel's secret."""
    if media_url:
        raise ValueError("The sandbox channel does not take media.")
    secret = (channel.secrets or {}).get("webhook_secret", "")
    if not secret:
        raise ValueError("This sandbox channel has no webhook secret.")
    body = json.dumps({"type": "message", "id": new_id(), "from": sender, "name": name, "text": text}).encode()
    return SimulatedWebhook(f"/webhooks/sandbox/{channel.uuid}/", body, "application/json",
                            {SIGNATURE_HEADER: sign(secret, body)})


# The kind -------------------------------------------------------------------------------------

SANDBOX = ChannelKind(
    key="sandbox",
    label="WhatsApp (sandbox)",
    family=whatsapp.FAMILY,
    provider="sandbox",
    # The sandbox stands in for WhatsApp so the demo shows the same rules.
    policy=whatsapp.POLICY,
    adapter=SandboxAdapter,
    webhooks=(Webhook(hook="sandbox", name="inbound", event_kind="message", answer=lambda: HttpResponse(status=204)),),
    credentials=(
        Credential("webhook_secret", "Webhook secret", secret=True, required=False, generate=new_secret,
                   help="Signs the simulated provider's webhooks; made for you when left empty."),
    ),
    simulate=simulate_inbound,
)
