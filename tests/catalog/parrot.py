"""A channel kind that exists only in the tests: "Parrot", a made-up provider that signs its
JSON webhooks with HMAC-SHA256 (`X-Parrot-Signature`) and takes sends as JSON over HTTP. It is
written the way a real kind module is (apps/providers/kinds/*.py): a family, a policy, an
adapter with its own error classification, its webhooks and its credentials. Registering it is
one line in the catalog (test_catalog.py does that with monkeypatch)."""

import hashlib
import hmac
import json

import requests

from apps.providers.kinds.base import (
    BLOCKED,
    Capabilities,
    ChannelKind,
    ChannelPolicy,
    Credential,
    Family,
    InboundMessage,
    OutboundMessage,
    PermanentSendError,
    RawEvent,
    SendResult,
    StatusUpdate,
    TransientSendError,
    Webhook,
    WebhookRequest,
    signatures_equal,
)

SIGNATURE = "X-Parrot-Signature"
# Parrot's own error codes, classified here and nowhere else.
REFUSALS = {"P-BLOCKED": (BLOCKED, "the contact has blocked this parrot.")}


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class ParrotAdapter:
    def __init__(self, *, config: dict, secrets: dict, channel_uuid: str = "", **_):
        self.api = (config.get("api") or "").rstrip("/")
        self.secret = secrets.get("secret", "")

    def missing_configuration(self) -> list[str]:
        return [name for name, value in {"API": self.api, "secret": self.secret}.items() if not value]

    def verify_signature(self, request: WebhookRequest) -> bool:
        return bool(self.secret) and signatures_equal(sign(self.secret, request.body), request.headers.get(SIGNATURE, ""))

    def split_webhook(self, request: WebhookRequest, *, kind: str) -> list[RawEvent]:
        try:
            body = json.loads(request.body)
        except ValueError:
            raise ValueError("Not a Parrot webhook.") from None
        if not isinstance(body, dict) or not body.get("id"):
            raise ValueError("A Parrot event needs an id.")
        if kind == "status":
            return [RawEvent(f"{body['id']}:{body.get('status')}", "status", body, ref=str(body["id"]))]
        return [RawEvent(str(body["id"]), "message", body, ref=str(body["id"]))]

    def normalize(self, event_kind: str, body: dict):
        if event_kind == "status":
            effect, reason = REFUSALS.get(body.get("error", ""), ("", ""))
            return StatusUpdate(external_id=str(body["id"]), status=str(body["status"]),
                                error_code=str(body.get("error", "")), error_reason=reason and f"Parrot: {reason}",
                                effect=effect)
        return InboundMessage(external_id=str(body["id"]), sender=str(body["from"]), sender_name=str(body.get("name", "")),
                              text=str(body.get("text", "")))

    def send(self, message: OutboundMessage) -> SendResult:
        try:
            response = requests.post(f"{self.api}/send", json={"to": message.to, "text": message.text},
                                     headers={"Authorization": f"Bearer {self.secret}"}, timeout=5)
        except requests.ConnectionError:
            raise TransientSendError("Parrot could not be reached.", code="connection") from None
        answer = response.json()
        if response.status_code != 200:
            effect, reason = REFUSALS.get(answer.get("error", ""), ("", "Parrot refused the message."))
            raise PermanentSendError(f"Failed to send via Parrot: {reason}", code=answer.get("error", ""), effect=effect)
        return SendResult(external_id=answer["id"])

    def fetch_media(self, url: str, *, max_bytes: int) -> tuple[bytes, str]:
        raise OSError("Parrot sends no media.")


PARROT = ChannelKind(
    key="parrot",
    label="Parrot",
    family=Family(key="parrot", label="Parrot", order=99, icon="M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20Z"),
    provider="parrot",
    policy=ChannelPolicy(label="Parrot", identity_kind="parrot", needs_phone=False, needs_opt_in=False,
                         reply_window=None, text_limit=140),
    adapter=ParrotAdapter,
    webhooks=(Webhook(hook="parrot", name="inbound"), Webhook(hook="parrot", name="status", event_kind="status", sub="status")),
    credentials=(Credential("api", "API base"), Credential("secret", "Shared secret", secret=True)),
    capabilities=Capabilities(),
)
