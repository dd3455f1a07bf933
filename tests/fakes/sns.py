"""A fake Amazon SNS for SES notifications: it publishes its signing certificate over HTTP on
127.0.0.1 (the tests allow that host through SNS_CERT_HOST_PATTERN), signs messages the way SNS
does (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA, over the canonical string of the
message's fields) and records the subscription confirmations it receives (GET SubscribeURL)."""

import base64
import json
import threading
import uuid
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.fakes.http import FakeHandler
from tests.fakes.ports import free_port

TOPIC = "arn:aws:sns:eu-west-1:123456789012:parley-inbound"
CERT_PATH = "/SimpleNotificationService-0000000000000000000000.pem"
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


class _Handler(FakeHandler):
    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == CERT_PATH:
            self.fake.certificate_fetches += 1
            return self._answer(200, self.fake.certificate.pem, "application/x-pem-file")
        if parts.path == "/" and parse_qs(parts.query).get("Action") == ["ConfirmSubscription"]:
            self.fake.confirmations.append(parse_qs(parts.query)["Token"][0])
            return self._answer(200, b"<ConfirmSubscriptionResponse/>", "text/xml")
        self.fake.other_requests.append(parts.path)
        return self._answer(404, b"not found", "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeSNS:
    def __init__(self, certificate):
        self.certificate = certificate
        self.confirmations: list[str] = []
        self.certificate_fetches = 0
        self.other_requests: list[str] = []  # anything else fetched from it (a "remote" image in a test)
        self._lock = threading.Lock()
        self._connections = set()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "FakeSNS":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sign(self, message: dict, *, version: str = "1") -> dict:
        message = {**message, "SignatureVersion": version, "SigningCertURL": self.base + CERT_PATH}
        text = "".join(f"{name}\n{message[name]}\n" for name in SIGNED[message["Type"]] if name in message)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.certificate.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()
        return message

    def notification(self, ses: dict, *, topic: str = TOPIC, version: str = "1", message_id: str = "") -> bytes:
        return json.dumps(self.sign({
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic,
            "Subject": "Amazon SES Email Receipt Notification",
            "Message": json.dumps(ses),
            "Timestamp": "2026-12-01T12:00:00.000Z",
            "UnsubscribeURL": self.base + "/?Action=Unsubscribe",
        }, version=version)).encode()

    def subscription(self, *, topic: str = TOPIC, token: str = "") -> bytes:
        token = token or uuid.uuid4().hex
        return json.dumps(self.sign({
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.",
            "SubscribeURL": f"{self.base}/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}",
            "Timestamp": "2026-12-01T12:00:00.000Z",
        })).encode()
