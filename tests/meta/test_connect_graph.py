"""The Graph client: Meta's error bodies become GraphError, and the one classifier
(`adapter.classify`) says what each means."""


import pytest
import requests

from apps.providers.kinds.base import CONFIGURATION, RATE_LIMITED, WINDOW_CLOSED, TransientSendError
from apps.providers.kinds.meta import graph as meta_graph
from apps.providers.kinds.meta.adapter import classify
from apps.providers.kinds.meta.graph import GraphError, GraphUnreachable
from tests.fakes import meta as fake_errors
from tests.fixtures.meta import APP_ID, APP_SECRET, GRAPH_VERSION, PAGE_ID, PAGE_TOKEN

SEND = {"recipient": {"id": "1"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}


def send(**kwargs):
    return meta_graph.graph_request("POST", f"{PAGE_ID}/messages", token=PAGE_TOKEN, version=GRAPH_VERSION,
                                    json=SEND, **kwargs)


@pytest.mark.parametrize(
    "scripted, token, rate, window, unavailable, transient",
    [
        (fake_errors.token_expired(), True, False, False, False, False),
        (fake_errors.token_invalid(), True, False, False, False, False),
        (fake_errors.permission_denied(), True, False, False, False, False),
        (fake_errors.permission_missing(), True, False, False, False, False),
        (fake_errors.outside_window(), False, False, True, False, False),
        (fake_errors.user_unavailable(), False, False, False, True, False),
        (fake_errors.rate_limited(613), False, True, False, False, True),
        (fake_errors.rate_limited(4), False, True, False, False, True),
        (fake_errors.rate_limited(80007), False, True, False, False, True),
        (fake_errors.whatsapp_re_engagement(), False, False, True, False, False),
        # 131026: the number cannot be reached on WhatsApp now (the send path always said so).
        (fake_errors.whatsapp_undeliverable(), False, False, False, True, False),
        (fake_errors.server_error(), False, False, False, False, True),
    ],
)
def test_graph_errors_are_classified(scripted, token, rate, window, unavailable, transient, fake_meta):
    fake_meta.script(scripted, endpoint="send")
    with pytest.raises(GraphError) as raised:
        send()
    error = raised.value
    assert (error.code, error.subcode) == (scripted.code, scripted.subcode)
    assert error.message == scripted.message and error.fbtrace_id and error.type == "OAuthException"
    assert error.status == scripted.status
    refusal = classify(error, kind="meta_whatsapp" if error.code >= 130000 else "messenger")
    assert (
        refusal.effect == CONFIGURATION,
        refusal.effect == RATE_LIMITED,
        refusal.effect == WINDOW_CLOSED,
        "isn't available" in refusal.reason,
        isinstance(refusal, TransientSendError),
    ) == (token, rate, window, unavailable, transient)


def test_whatsapp_error_details_and_retry_after(fake_meta):
    fake_meta.script(fake_errors.whatsapp_re_engagement(), fake_errors.rate_limited(613, retry_after=7),
                     endpoint="send")
    with pytest.raises(GraphError) as first:
        send()
    assert "24 hours" in first.value.details
    with pytest.raises(GraphError) as second:
        send()
    assert second.value.retry_after == 7.0


def test_a_hang_is_unreachable_and_maybe_delivered(fake_meta, settings):
    settings.PROVIDER_READ_TIMEOUT = 0.3
    fake_meta.script(fake_errors.hang(5), endpoint="send")
    with pytest.raises(GraphUnreachable) as raised:
        send()
    assert raised.value.maybe_delivered is True
    assert len(fake_meta.sent) == 1  # Meta did take it: never send twice blindly


def test_a_refused_connection_was_not_delivered_and_names_no_secret(settings):
    with socket_closed_port() as port:
        settings.META_GRAPH_BASE = f"http://127.0.0.1:{port}"
        with pytest.raises(GraphUnreachable) as raised:
            meta_graph.oauth_exchange_code(app_id=APP_ID, app_secret=APP_SECRET, redirect_uri="https://x/", code="c")
    assert raised.value.maybe_delivered is False
    assert APP_SECRET not in str(raised.value) and raised.value.__suppress_context__


def test_a_dropped_answer_may_have_been_delivered(fake_meta):
    fake_meta.script(fake_errors.drop(created=True), endpoint="send")
    with pytest.raises(GraphUnreachable) as raised:
        send()
    assert raised.value.maybe_delivered is True


def test_profiles_and_tokens_in_headers(fake_meta):
    fake_meta.add_profile("psid-1", first_name="Siti", last_name="Rahman", profile_pic="https://x.fbcdn.net/p.jpg")
    fake_meta.add_profile("igsid-1", name="Siti R", username="siti", profile_pic="https://x.cdninstagram.com/p.jpg")
    assert meta_graph.messenger_profile(psid="psid-1", page_token=PAGE_TOKEN, version=GRAPH_VERSION) == {
        "id": "psid-1", "first_name": "Siti", "last_name": "Rahman", "profile_pic": "https://x.fbcdn.net/p.jpg"}
    assert meta_graph.instagram_profile(igsid="igsid-1", page_token=PAGE_TOKEN, version=GRAPH_VERSION)["username"] == "siti"
    assert all("access_token" not in r.query and r.headers["Authorization"] == f"Bearer {PAGE_TOKEN}"
               for r in fake_meta.requests_to("profile"))


def test_non_json_answers_are_graph_errors(fake_meta):
    # The fake's CDN answers bytes; Graph never should.
    url = fake_meta.add_cdn_media(b"<html>", "text/html", name="page")
    path = url.split(fake_meta.base_url, 1)[1]
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    with pytest.raises(GraphError):
        meta_graph._decode(response)
    assert path == "/cdn/page"


class socket_closed_port:
    """A local port nobody listens on."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.sock.close()
        return port

    def __exit__(self, *exc):
        return False
