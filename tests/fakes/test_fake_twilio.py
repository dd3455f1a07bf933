"""The fake Twilio server, exercised through the real twilio SDK over HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fakes import twilio as fakes
from tests.fakes.twilio import FakeTwilio

SID = "AC" + "1" * 32
TOKEN = "secret-token"
OTHER_SID = "AC" + "2" * 32
OTHER_TOKEN = "other-token"
SENDER = "whatsapp:+14155238886"
TO = "whatsapp:+4915112345678"


class FakeHttpClient(TwilioHttpClient):
    """Sends the SDK's https://api.twilio.com requests to the fake instead."""

    def __init__(self, base_url: str, **kwargs):
        super().__init__(**kwargs)
        self.base_url = base_url
        self.last_response = None

    def request(self, method, url, *args, **kwargs):
        if url.startswith("https://api.twilio.com"):
            url = self.base_url + url[len("https://api.twilio.com") :]
        self.last_response = None
        response = super().request(method, url, *args, **kwargs)
        self.last_response = response
        return response


@pytest.fixture
def fake():
    server = FakeTwilio().start()
    server.add_account(SID, TOKEN, [SENDER])
    server.add_account(OTHER_SID, OTHER_TOKEN, ["whatsapp:+14155550000"])
    yield server
    server.stop()


def make_client(fake, sid=SID, token=TOKEN, timeout=5):
    return Client(sid, token, http_client=FakeHttpClient(fake.base_url, timeout=timeout))


@pytest.fixture
def client(fake):
    return make_client(fake)


def test_create_message_returns_twilio_message_json(fake, client):
    msg = client.messages.create(
        from_=SENDER, to=TO, body="Hello", status_callback="http://app.test/cb"
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", msg.sid)
    assert msg.account_sid == SID
    assert msg.from_ == SENDER
    assert msg.to == TO
    assert msg.body == "Hello"
    assert msg.status == "queued"
    assert msg.direction == "outbound-api"
    assert msg.num_media == "0"
    assert msg.num_segments == "1"
    assert msg.api_version == "2010-04-01"
    assert msg.date_created is not None  # SDK parsed the RFC 2822 date
    assert msg.date_sent is None
    assert msg.error_code is None and msg.error_message is None
    assert msg.price is None and msg.price_unit == "USD"
    assert msg.messaging_service_sid is None
    assert msg.uri == f"/2010-04-01/Accounts/{SID}/Messages/{msg.sid}.json"
    assert msg.subresource_uris == {
        "media": f"/2010-04-01/Accounts/{SID}/Messages/{msg.sid}/Media.json"
    }
    assert client.http_client.last_response.status_code == 201

    assert [m["sid"] for m in fake.sent] == [msg.sid]
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000", fake.sent[0]["date_created"])
    [req] = fake.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.auth == (SID, TOKEN)
    assert req.params["Body"] == ["Hello"]
    assert req.params["StatusCallback"] == ["http://app.test/cb"]
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"

    # The created message can be fetched back.
    assert client.messages(msg.sid).fetch().status == "queued"


def test_media_urls_repeat(fake, client):
    msg = client.messages.create(
        from_=SENDER, to=TO, media_url=["https://a.test/1.jpg", "https://a.test/2.jpg"]
    )
    assert msg.num_media == "2"
    assert msg.body == ""
    assert fake.requests[-1].params["MediaUrl"] == ["https://a.test/1.jpg", "https://a.test/2.jpg"]

    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(from_=SENDER, to=TO, media_url=["/relative.jpg"])
    assert exc.value.code == 21620


def test_wrong_token_is_401_20003(fake):
    client = make_client(fake, token="wrong")
    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(from_=SENDER, to=TO, body="x")
    assert exc.value.status == 401
    assert exc.value.code == 20003
    assert client.http_client.last_response.status_code == 401
    assert json.loads(client.http_client.last_response.text) == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert fake.sent == []


def test_unknown_account_is_404(fake):
    client = make_client(fake, sid="AC" + "9" * 32, token="whatever")
    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(from_=SENDER, to=TO, body="x")
    assert (exc.value.status, exc.value.code) == (404, 20404)


def test_validation_errors(fake, client):
    cases = [
        (dict(from_=SENDER, to="whatsapp:+1555", body="x"), 21211),
        (dict(from_=SENDER, to="+4915112345678", body="x"), 21211),
        (dict(from_="whatsapp:+19999999999", to=TO, body="x"), 63007),
        (dict(from_=SENDER, to=TO), 21619),
        (dict(from_=SENDER, to=TO, body="x" * 1601), 21617),
    ]
    for kwargs, code in cases:
        with pytest.raises(TwilioRestException) as exc:
            client.messages.create(**kwargs)
        assert (exc.value.status, exc.value.code) == (400, code), kwargs
        if code == 21211 and kwargs["to"] == "whatsapp:+1555":
            assert "The 'To' number whatsapp:+1555 is not a valid phone number." in exc.value.msg
    assert fake.sent == []
    # 1600 characters exactly and a ContentSid alone are fine.
    client.messages.create(from_=SENDER, to=TO, body="x" * 1600)
    client.messages.create(from_=SENDER, to=TO, content_sid="HX" + "0" * 32, content_variables='{"1": "a"}')
    assert len(fake.sent) == 2


def test_scripted_429_exposes_retry_after(fake, client):
    fake.script(fakes.too_many_requests(retry_after=7))
    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(from_=SENDER, to=TO, body="x")
    assert (exc.value.status, exc.value.code) == (429, 20429)
    assert client.http_client.last_response.headers["Retry-After"] == "7"
    # Script consumed: the next call succeeds.
    client.messages.create(from_=SENDER, to=TO, body="x")
    assert len(fake.sent) == 1


def test_scripts_in_order_and_per_recipient(fake, client):
    other = "whatsapp:+4915100000000"
    fake.script(fakes.outside_window(), to=other)
    fake.script(fakes.unsubscribed(), fakes.server_error(), fakes.service_unavailable())

    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(from_=SENDER, to=other, body="x")
    assert exc.value.code == 63016
    codes = []
    for _ in range(3):
        with pytest.raises(TwilioRestException) as exc:
            client.messages.create(from_=SENDER, to=TO, body="x")
        codes.append((exc.value.status, exc.value.code))
    assert codes == [(400, 21610), (500, 20500), (503, 20503)]
    client.messages.create(from_=SENDER, to=other, body="x")
    assert len(fake.sent) == 1


def test_scripts_apply_after_auth(fake):
    fake.script(fakes.unsubscribed())
    with pytest.raises(TwilioRestException) as exc:
        make_client(fake, token="wrong").messages.create(from_=SENDER, to=TO, body="x")
    assert exc.value.code == 20003
    with pytest.raises(TwilioRestException) as exc:
        make_client(fake).messages.create(from_=SENDER, to=TO, body="x")
    assert exc.value.code == 21610


def test_rate_limit_answers_429_beyond_rate():
    with FakeTwilio(rate_per_second=5) as fake:
        fake.add_account(SID, TOKEN, [SENDER, "whatsapp:+14155550001"])
        client = make_client(fake)
        results = []
        for _ in range(6):
            try:
                client.messages.create(from_=SENDER, to=TO, body="x")
                results.append(201)
            except TwilioRestException as exc:
                assert exc.code == 20429
                assert client.http_client.last_response.headers["Retry-After"] == "1"
                results.append(exc.status)
        assert results == [201] * 5 + [429]  # burst == rate, then throttled
        assert len(fake.sent) == 5
        # Buckets are per sender.
        client.messages.create(from_="whatsapp:+14155550001", to=TO, body="x")
        # Tokens refill at the rate.
        time.sleep(0.25)
        client.messages.create(from_=SENDER, to=TO, body="x")
        fake.reset()
        assert fake.sent == [] and fake.requests == []


def test_hang_creates_message_then_answers(fake):
    client = make_client(fake, timeout=0.3)
    release = threading.Event()
    fake.script(fakes.hang(10, release=release))
    start = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        client.messages.create(from_=SENDER, to=TO, body="x")
    assert time.monotonic() - start < 2
    assert len(fake.sent) == 1  # the provider got it
    release.set()

    # A short hang answers success after the delay.
    fake.script(fakes.hang(0.2))
    start = time.monotonic()
    msg = make_client(fake).messages.create(from_=SENDER, to=TO, body="y")
    assert time.monotonic() - start >= 0.2
    assert msg.sid == fake.sent[-1]["sid"]


def test_connection_drop(fake, client):
    fake.script(fakes.drop(), fakes.drop(created=True))
    with pytest.raises(requests.exceptions.ConnectionError):
        client.messages.create(from_=SENDER, to=TO, body="x")
    assert fake.sent == []
    with pytest.raises(requests.exceptions.ConnectionError):
        client.messages.create(from_=SENDER, to=TO, body="x")
    assert len(fake.sent) == 1
    client.messages.create(from_=SENDER, to=TO, body="x")
    assert len(fake.sent) == 2
    assert len(fake.requests) == 3


def test_media_fetch_requires_account_auth(fake):
    url = fake.add_media(SID, b"\x89PNG-bytes", "image/png")
    assert re.fullmatch(
        re.escape(fake.base_url) + rf"/2010-04-01/Accounts/{SID}/Messages/MM[0-9a-f]{{32}}/Media/ME[0-9a-f]{{32}}",
        url,
    )
    ok = requests.get(url, auth=(SID, TOKEN), timeout=5)
    assert ok.status_code == 200
    assert ok.content == b"\x89PNG-bytes"
    assert ok.headers["Content-Type"] == "image/png"

    anonymous = requests.get(url, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == 20003
    wrong = requests.get(url, auth=(OTHER_SID, OTHER_TOKEN), timeout=5)
    assert wrong.status_code == 401


def test_unknown_path_is_twilio_404(fake):
    response = requests.get(fake.base_url + "/nope", timeout=5)
    assert response.status_code == 404
    assert response.json()["code"] == 20404
    assert response.json()["more_info"] == "https://www.twilio.com/docs/errors/20404"


class _CallbackReceiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        params = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        url = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
        valid = RequestValidator(TOKEN).validate(url, params, self.headers["X-Twilio-Signature"])
        self.received.append(params)
        self.send_response(204 if valid else 403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_status_callback_is_signed(fake, client):
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _CallbackReceiver)
    threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    _CallbackReceiver.received = []
    try:
        callback = f"http://127.0.0.1:{receiver.server_address[1]}/webhooks/twilio/status"
        msg = client.messages.create(from_=SENDER, to=TO, body="x", status_callback=callback)

        url, params = fake.status_callback(msg.sid, "undelivered", error_code="63016")
        assert url == callback
        assert params["MessageSid"] == params["SmsSid"] == msg.sid
        assert params["MessageStatus"] == params["SmsStatus"] == "undelivered"
        assert params["AccountSid"] == SID
        assert params["From"] == SENDER and params["To"] == TO
        assert params["ApiVersion"] == "2010-04-01"
        assert params["ChannelPrefix"] == "whatsapp"
        assert params["ErrorCode"] == "63016"
        signature = fake.signature(url, params, TOKEN)
        assert RequestValidator(TOKEN).validate(url, params, signature)
        assert not RequestValidator("other").validate(url, params, signature)
        assert client.messages(msg.sid).fetch().status == "undelivered"

        assert fake.post_status_callback(msg.sid, "delivered") == 204
        assert _CallbackReceiver.received[-1]["MessageStatus"] == "delivered"
        assert "ErrorCode" not in _CallbackReceiver.received[-1]
    finally:
        receiver.shutdown()
        receiver.server_close()
