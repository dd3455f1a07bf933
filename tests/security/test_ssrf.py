"""SSRF: media URLs a webhook names are fetched only from the provider's hosts, only at public
addresses, only up to a size and a deadline. Refusals happen before any connection: a listening
socket on 127.0.0.1 records every connection, and an audit hook records every connect() the
process makes."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.storage import default_storage

from apps.conversations.models import Attachment, Message
from apps.providers import media
from apps.providers.media import MediaRefused, address_public, fetch_limited
from apps.providers.models import InboundEvent
from tests.security.conftest import post_form, public_url, sign, twilio_params

TWILIO_HOSTS = ["api.twilio.com", "twiliocdn.com", "twilio.com"]


class MediaServer:
    """A provider-like media host on 127.0.0.2 (an address the test lists as allowed), whose
    paths redirect, declare huge bodies, stream without end or trickle slowly."""

    def __init__(self, host: str = "127.0.0.2"):
        self.sent: dict[str, int] = {}  # path -> body bytes written before the client went away
        self.finished: dict[str, bool] = {}
        self.redirects: dict[str, str] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://{host}:{self.httpd.server_address[1]}"
        self.host = host
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def handle(self, request: BaseHTTPRequestHandler):
        path = request.path
        self.sent[path] = 0
        self.finished[path] = False
        try:
            if path in self.redirects:
                request.send_response(302)
                request.send_header("Location", self.redirects[path])
                request.send_header("Content-Length", "0")
                request.end_headers()
            elif path == "/ok.png":
                self._body(request, path, b"\x89PNG" + b"\x00" * 100, content_type="image/png")
            elif path == "/declared-huge":
                request.send_response(200)
                request.send_header("Content-Type", "image/jpeg")
                request.send_header("Content-Length", str(50 * 1024 * 1024))
                request.end_headers()
                self._write(request, path, b"x" * 1024, times=10)
            elif path == "/chunked-endless":
                request.send_response(200)
                request.send_header("Content-Type", "image/jpeg")
                request.send_header("Transfer-Encoding", "chunked")
                request.end_headers()
                for _ in range(2000):  # 2000 chunks of 8 KB (16 MB) unless the client stops reading
                    request.wfile.write(b"2000\r\n" + b"x" * 8192 + b"\r\n")
                    self.sent[path] += 8192
                request.wfile.write(b"0\r\n\r\n")
            elif path == "/trickle":
                request.send_response(200)
                request.send_header("Content-Type", "image/jpeg")
                request.send_header("Content-Length", "200")
                request.end_headers()
                for _ in range(200):  # one byte every 50 ms: 10 s unless the client hangs up
                    request.wfile.write(b"x")
                    request.wfile.flush()
                    self.sent[path] += 1
                    time.sleep(0.05)
            elif path == "/slow-headers":
                time.sleep(3)
                self._body(request, path, b"late", content_type="image/jpeg")
            else:
                request.send_error(404)
                return
            self.finished[path] = True
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self, request, path, body: bytes, *, content_type: str):
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        self._write(request, path, body)

    def _write(self, request, path, data: bytes, times: int = 1):
        for _ in range(times):
            request.wfile.write(data)
            self.sent[path] += len(data)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def media_server():
    try:
        server = MediaServer()
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    yield server
    server.close()


def connected_to(connects, host: str, port: int | None = None) -> bool:
    return any(h == host and (port is None or p == port) for h, p in connects)


# Addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.8.9.10", "::1", "169.254.169.254", "fe80::1", "10.0.0.5", "172.16.0.1", "172.31.255.255",
     "192.168.1.1", "100.64.0.1", "0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "fc00::1",
     "224.0.0.1", "255.255.255.255", "198.18.0.1"],
)
def test_internal_addresses_are_not_public(address):
    assert not address_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "54.172.60.1", "2606:4700:4700::1111"])
def test_public_addresses_are(address):
    assert address_public(address)


# Direct URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/media",
        "http://[::1]:{port}/media",
        "http://localhost:{port}/media",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.5/media",
        "http://172.16.0.1/media",
        "http://192.168.1.1/media",
        "http://0.0.0.0:{port}/media",
        "http://2130706433:{port}/media",  # 127.0.0.1 as one number
        "http://0x7f.0.0.1:{port}/media",
        "http://[::ffff:127.0.0.1]:{port}/media",
        "https://api.twilio.com@127.0.0.1:{port}/media",  # userinfo that looks like the host
        "http://127.0.0.1:{port}#@api.twilio.com/media",
        "http://api.twilio.com.127.0.0.1.nip.io:{port}/media",
        "http://evilapi.twilio.com.attacker.test/media",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/_x",
    ],
)
def test_internal_urls_are_refused_without_a_connection(template, trap, connects):
    url = template.format(port=trap.port)
    with pytest.raises(MediaRefused):
        fetch_limited(url, allowed_hosts=TWILIO_HOSTS)
    assert trap.connections == []
    assert connects == []


@pytest.mark.parametrize("host", ["localhost", "ip6-localhost", "localhost.localdomain"])
def test_an_allowed_name_that_resolves_to_loopback_is_refused_without_a_connection(host, trap, connects):
    # The operator allowed the name; it resolves to 127.0.0.1 / ::1 here. A provider host that
    # is (re)bound to an internal address gets no connection either.
    with pytest.raises(MediaRefused):
        fetch_limited(f"http://{host}:{trap.port}/media", allowed_hosts=[*TWILIO_HOSTS, host])
    assert trap.connections == []
    assert connects == []


def test_the_address_is_checked_at_connect_time_not_only_the_name(trap, connects, monkeypatch):
    # A name that looks public when the URL is checked and resolves to loopback when the
    # connection is made (DNS rebinding): the connection is refused at connect time.
    calls = []
    real = media.socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        calls.append(host)
        return real("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(media.socket, "getaddrinfo", rebinding)
    with pytest.raises(MediaRefused, match="non-public"):
        fetch_limited(f"https://media.twiliocdn.com:{trap.port}/ME1", allowed_hosts=TWILIO_HOSTS)
    assert calls == ["media.twiliocdn.com"]
    assert trap.connections == [] and connects == []


def test_an_allowed_host_serves_media(media_server, connects):
    body, content_type = fetch_limited(f"{media_server.base}/ok.png", allowed_hosts=[media_server.host])
    assert (body[:4], content_type) == (b"\x89PNG", "image/png")
    assert connects == [(media_server.host, int(media_server.base.rsplit(":", 1)[1]))]


# Redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/x",
        "http://localhost:{port}/x",
        "http://[::1]:{port}/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/x",
        "http://192.168.0.10/x",
        "//127.0.0.1:{port}/x",  # scheme-relative
        "file:///etc/passwd",
    ],
)
def test_a_redirect_into_internal_addresses_is_refused_without_a_connection(media_server, trap, connects, target):
    media_server.redirects["/redirect"] = target.format(port=trap.port)
    with pytest.raises(MediaRefused):
        # localhost is "allowed" by name: the address check still refuses it.
        fetch_limited(f"{media_server.base}/redirect", allowed_hosts=[media_server.host, "localhost"])
    assert trap.connections == []
    assert {host for host, _ in connects} == {media_server.host}


def test_a_redirect_loop_ends(media_server, connects):
    media_server.redirects["/loop"] = f"{media_server.base}/loop"
    with pytest.raises(MediaRefused, match="redirects"):
        fetch_limited(f"{media_server.base}/loop", allowed_hosts=[media_server.host])
    assert len(connects) <= 4


# Size and time ---------------------------------------------------------------------------


def test_a_declared_oversized_body_is_refused_before_it_is_read(media_server):
    with pytest.raises(MediaRefused, match="too large"):
        fetch_limited(f"{media_server.base}/declared-huge", allowed_hosts=[media_server.host], max_bytes=1000)


def test_an_oversized_chunked_body_stops_at_the_limit(media_server):
    with pytest.raises(MediaRefused, match="too large"):
        fetch_limited(f"{media_server.base}/chunked-endless", allowed_hosts=[media_server.host], max_bytes=100_000)
    time.sleep(0.3)
    # We hung up long before the 16 MB the server meant to send.
    assert not media_server.finished["/chunked-endless"]
    assert media_server.sent["/chunked-endless"] < 16 * 1024 * 1024


def test_a_body_that_trickles_in_is_cut_off_at_the_total_deadline(media_server, settings):
    # Every byte arrives well within the read timeout, so only a total deadline stops it.
    settings.PROVIDER_READ_TIMEOUT = 5
    with pytest.raises(MediaRefused, match="too long"):
        fetch_limited(f"{media_server.base}/trickle", allowed_hosts=[media_server.host], deadline=0.5)
    time.sleep(0.2)
    assert not media_server.finished["/trickle"]
    assert 0 < media_server.sent["/trickle"] < 200


def test_headers_that_never_come_are_cut_off_at_the_deadline(media_server, settings):
    settings.PROVIDER_READ_TIMEOUT = 20
    with pytest.raises(MediaRefused):
        fetch_limited(f"{media_server.base}/slow-headers", allowed_hosts=[media_server.host], deadline=0.5)
    assert not media_server.finished.get("/slow-headers")


# Through the inbound pipeline ------------------------------------------------------------


def receive_media(client, channel, media_url: str, sid: str, capture):
    params = twilio_params(
        MessageSid=sid, SmsSid=sid, SmsMessageSid=sid, NumMedia="1", MediaUrl0=media_url,
        MediaContentType0="image/jpeg", Body="See the photo",
    )
    path = f"/webhooks/twilio/{channel.uuid}/"
    with capture(execute=True):
        response = post_form(client, path, params, sign(public_url(path), params))
    assert response.status_code == 200
    return Message.objects.get(external_id=sid)


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        "http://localhost:{port}/media",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://api.twilio.com@127.0.0.1:{port}/media",
        "http://10.0.0.5/media",
    ],
)
def test_inbound_media_at_internal_addresses_is_never_fetched_and_the_message_is_kept(
    client, whatsapp, customer, trap, connects, django_capture_on_commit_callbacks, settings, template
):
    settings.TWILIO_MEDIA_HOSTS = [*TWILIO_HOSTS, "localhost"]
    message = receive_media(client, whatsapp, template.format(port=trap.port), "SM" + "5" * 32,
                            django_capture_on_commit_callbacks)
    assert message.text == "See the photo\n\n[attachment could not be downloaded]"
    assert not Attachment.objects.exists()
    assert InboundEvent.objects.get().state == "processed"
    assert trap.connections == []
    assert not any(port == trap.port or host in ("169.254.169.254", "10.0.0.5") for host, port in connects)


def test_inbound_media_redirected_into_loopback_is_never_fetched(
    client, whatsapp, customer, trap, connects, media_server, django_capture_on_commit_callbacks, settings
):
    settings.TWILIO_MEDIA_HOSTS = [*TWILIO_HOSTS, media_server.host]
    media_server.redirects["/media/ME1"] = f"http://127.0.0.1:{trap.port}/admin/"
    message = receive_media(client, whatsapp, f"{media_server.base}/media/ME1", "SM" + "6" * 32,
                            django_capture_on_commit_callbacks)
    assert message.text.endswith("[attachment could not be downloaded]")
    assert not Attachment.objects.exists()
    assert trap.connections == []
    assert not any(port == trap.port for _, port in connects)


def test_inbound_media_from_an_allowed_host_is_stored(
    client, whatsapp, customer, media_server, django_capture_on_commit_callbacks, settings
):
    settings.TWILIO_MEDIA_HOSTS = [*TWILIO_HOSTS, media_server.host]
    message = receive_media(client, whatsapp, f"{media_server.base}/ok.png", "SM" + "7" * 32,
                            django_capture_on_commit_callbacks)
    attachment = message.attachments.get()
    with default_storage.open(attachment.file.name) as stored:
        assert stored.read()[:4] == b"\x89PNG"
