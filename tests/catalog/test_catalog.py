"""The channel catalog: a kind declared in one module and registered with one line sends and
receives through the generic pipeline; no provider's error code leaks out of its kind module."""

import ast
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from apps.conversations import sending
from apps.conversations.models import Message
from apps.providers import catalog, services
from apps.providers.models import InboundEvent
from tests.catalog import parrot

APPS = Path(__file__).resolve().parents[2] / "apps"


class FakeParrot:
    """Parrot's API over real HTTP on 127.0.0.1: checks the bearer secret, records what it sends."""

    def __init__(self, secret: str):
        self.sent, self.secret = [], secret
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.headers.get("Authorization") != f"Bearer {fake.secret}":
                    return self._answer(401, {"error": "P-AUTH"})
                if body["to"] == "blocked-parrot":
                    return self._answer(400, {"error": "P-BLOCKED"})
                fake.sent.append(body)
                return self._answer(200, {"id": f"P-{len(fake.sent)}"})

            def _answer(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def parrot_kind(monkeypatch):
    # The one catalog line.
    monkeypatch.setitem(catalog.KINDS, parrot.PARROT.key, parrot.PARROT)
    return parrot.PARROT


@pytest.fixture
def fake_parrot():
    fake = FakeParrot("s3cret")
    yield fake
    fake.stop()


def post_signed(client, path: str, body: dict, secret: str = "s3cret"):
    raw = json.dumps(body).encode()
    return client.post(path, data=raw, content_type="application/json",
                       headers={parrot.SIGNATURE: parrot.sign(secret, raw)})


def test_a_kind_registered_by_one_line_sends_and_receives_through_the_generic_pipeline(
    parrot_kind, fake_parrot, acme, alice, alice_client, client, django_capture_on_commit_callbacks
):
    from apps.accounts.models import Membership

    channel = services.channel_create(organization=acme, kind="parrot", name="Parrot line",
                                      values={"api": fake_parrot.url, "secret": "s3cret"})
    assert services.channel_readiness(channel) == (True, "")

    # Inbound: a signed webhook at the kind's URL is recorded once, processed, shown.
    inbound = f"/webhooks/parrot/{channel.uuid}/"
    with django_capture_on_commit_callbacks(execute=True):
        assert post_signed(client, inbound, {"id": "in-1", "from": "polly", "name": "Polly", "text": "Squawk"}).status_code == 200
        assert post_signed(client, inbound, {"id": "in-1", "from": "polly", "name": "Polly", "text": "Squawk"}).status_code == 200
    assert post_signed(client, inbound, {"id": "in-2", "from": "polly", "text": "x"}, secret="forged").status_code == 403
    assert client.post(inbound, data=b"[]", content_type="application/json",
                       headers={parrot.SIGNATURE: parrot.sign("s3cret", b"[]")}).status_code == 400
    message = Message.objects.get(channel=channel)
    assert (message.direction, message.text, message.conversation.contact.name) == ("inbound", "Squawk", "Polly")
    assert InboundEvent.objects.filter(channel=channel).count() == 1

    # The inbox lists it and its family; the API shows its webhooks and credentials' state.
    page = alice_client.get(reverse("inbox:conversation", args=[message.conversation_id])).content.decode()
    assert "Squawk" in page and "ch-parrot" in page
    [api_channel] = alice_client.get("/api/v1/channels/").json()
    assert api_channel["webhooks"] == {"inbound": f"{settings.PUBLIC_BASE_URL}{inbound}",
                                       "status": f"{settings.PUBLIC_BASE_URL}{inbound}status/"}
    assert api_channel["secrets"] == {"secret": "set"} and api_channel["family"] == "parrot"

    # Outbound: the outbox sends through the kind's adapter over HTTP; a status webhook moves it.
    membership = Membership.objects.get(user=alice, organization=acme)
    with django_capture_on_commit_callbacks(execute=True):
        reply = sending.message_send(membership=membership, conversation=message.conversation, text="Pretty bird")
    reply.refresh_from_db()
    assert (reply.status, reply.external_id) == ("sent", "P-1")
    assert fake_parrot.sent == [{"to": "polly", "text": "Pretty bird"}]
    with django_capture_on_commit_callbacks(execute=True):
        assert post_signed(client, f"{inbound}status/", {"id": "P-1", "status": "delivered"}).status_code == 200
    reply.refresh_from_db()
    assert reply.status == "delivered"

    # The kind's policy applies (140 characters), and its own refusal codes have their effects.
    with pytest.raises(Exception, match="at most 140 characters"):
        sending.message_send(membership=membership, conversation=message.conversation, text="x" * 141)


def test_a_kind_s_refusal_has_its_effect_through_the_generic_pipeline(parrot_kind, fake_parrot, acme, alice,
                                                                      django_capture_on_commit_callbacks):
    from apps.accounts.models import Membership
    from apps.contacts import services as contact_services
    from apps.conversations import services as conversation_services

    channel = services.channel_create(organization=acme, kind="parrot", name="Parrot line",
                                      values={"api": fake_parrot.url, "secret": "s3cret"})
    contact, _ = contact_services.contact_resolve(organization=acme, kind="parrot", address="blocked-parrot")
    conversation, _ = conversation_services.conversation_open_for(contact=contact, channel=channel)
    membership = Membership.objects.get(user=alice, organization=acme)
    with django_capture_on_commit_callbacks(execute=True):
        refused = sending.message_send(membership=membership, conversation=conversation, text="Hello?")
    refused.refresh_from_db()
    assert (refused.status, refused.error_code) == ("failed", "P-BLOCKED")
    assert refused.error_reason == "Failed to send via Parrot: the contact has blocked this parrot."


# No provider code outside its kind module ----------------------------------------------------------


def _kind_modules() -> list[Path]:
    kinds = APPS / "providers" / "kinds"
    return [path for path in kinds.rglob("*.py") if path.name not in ("__init__.py", "base.py")] + [
        kinds / "meta" / "__init__.py"
    ]


def _codes_of(path: Path) -> set[int]:
    """The provider error codes a kind module classifies: the integers (four digits or more) of
    its module-level tables whose names speak of codes or refusals."""
    tree = ast.parse(path.read_text())
    codes = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if not any(re.search(r"CODE|REFUSAL|EFFECT|WINDOW|UNAVAILABLE|CONFIGURATION", name) for name in names):
            continue
        for value in ast.walk(node):
            if isinstance(value, ast.Constant) and isinstance(value.value, int) and value.value >= 1000:
                codes.add(value.value)
    return codes


def test_no_provider_error_code_appears_outside_its_kind_module():
    modules = _kind_modules()
    owners = {path: _codes_of(path) for path in modules}
    assert owners[APPS / "providers" / "kinds" / "twilio.py"] >= {21610, 63016, 20003}
    assert owners[APPS / "providers" / "kinds" / "meta" / "adapter.py"] >= {131047, 2018278, 80007}
    production = [path for path in APPS.rglob("*.py") if "migrations" not in path.parts]
    leaks = []
    for path, codes in owners.items():
        family = path.parent if path.parent.name == "meta" else path
        for other in production:
            if other == path or (family.is_dir() and family in other.parents):
                continue
            text = other.read_text()
            leaks += [(str(other.relative_to(APPS)), code) for code in codes if re.search(rf"\b{code}\b", text)]
    assert leaks == []
