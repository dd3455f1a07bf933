"""The fake Graph API answers like Meta's: OAuth, pages, Send API rules, WhatsApp Cloud, errors."""

import hashlib
import hmac
import json
import threading

import pytest
import requests

from tests.fakes import meta
from tests.fakes.meta import FakeMeta

V = "v21.0"
REDIRECT = "https://parley.test/settings/integrations/meta/callback/"


@pytest.fixture(scope="module")
def fake():
    server = FakeMeta().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def setup(fake):
    fake.reset()
    fake.set_app("app1", "secret1")
    fake.add_page("p1", "Page One", "ptoken1", instagram=("ig1", "one"))
    fake.add_page("p2", "Page Two", "ptoken2")
    fake.add_whatsapp_number("n1", "watoken", display_phone_number="+1 555-0100", waba_id="w1")


def url(fake, path):
    return f"{fake.base_url}/{V}{path}"


def long_lived_token(fake, pages=None):
    code = fake.issue_code(REDIRECT, pages)
    short = requests.get(url(fake, "/oauth/access_token"), params={
        "client_id": "app1", "client_secret": "secret1", "redirect_uri": REDIRECT, "code": code}, timeout=5)
    assert short.status_code == 200
    long = requests.get(url(fake, "/oauth/access_token"), params={
        "grant_type": "fb_exchange_token", "client_id": "app1", "client_secret": "secret1",
        "fb_exchange_token": short.json()["access_token"]}, timeout=5)
    assert long.status_code == 200
    return long.json()["access_token"]


def test_code_exchange_is_single_use_and_checks_redirect_uri_and_secret(fake):
    code = fake.issue_code(REDIRECT)
    params = {"client_id": "app1", "client_secret": "wrong", "redirect_uri": REDIRECT, "code": code}
    assert requests.get(url(fake, "/oauth/access_token"), params=params, timeout=5).json()["error"]["code"] == 1
    params["client_secret"] = "secret1"
    wrong_uri = requests.get(url(fake, "/oauth/access_token"), params={**params, "redirect_uri": REDIRECT + "x"}, timeout=5)
    assert wrong_uri.json()["error"]["error_subcode"] == 36008
    first = requests.get(url(fake, "/oauth/access_token"), params=params, timeout=5)
    assert first.status_code == 200 and first.json()["access_token"].startswith("EAAS")
    again = requests.get(url(fake, "/oauth/access_token"), params=params, timeout=5)
    assert again.status_code == 400
    assert again.json()["error"]["error_subcode"] == 36009


def test_me_accounts_lists_pages_with_instagram_for_a_user_token(fake):
    token = long_lived_token(fake, pages=["p1", "p2"])
    answer = requests.get(url(fake, "/me/accounts"), params={
        "access_token": token, "fields": "id,name,access_token,instagram_business_account{id,username}"}, timeout=5)
    pages = {p["id"]: p for p in answer.json()["data"]}
    assert pages["p1"]["access_token"] == "ptoken1"
    assert pages["p1"]["instagram_business_account"] == {"id": "ig1", "username": "one"}
    assert "instagram_business_account" not in pages["p2"]
    bad = requests.get(url(fake, "/me/accounts"), params={"access_token": "nope"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 190


def test_dialog_redirects_with_code_and_state(fake):
    answer = requests.get(url(fake, "/dialog/oauth"), params={
        "client_id": "app1", "redirect_uri": REDIRECT, "state": "s1", "scope": "pages_messaging"},
        allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT + "?") and "state=s1" in location and "code=" in location
    fake.dialog_denied = True
    denied = requests.get(url(fake, "/dialog/oauth"), params={
        "client_id": "app1", "redirect_uri": REDIRECT, "state": "s1"}, allow_redirects=False, timeout=5)
    assert "error=access_denied" in denied.headers["Location"]


def test_subscribed_apps_post_get_delete_with_the_page_token(fake):
    endpoint = url(fake, "/p1/subscribed_apps")
    assert requests.post(endpoint, data={"subscribed_fields": "messages,message_reads", "access_token": "ptoken2"},
                         timeout=5).json()["error"]["code"] == 200
    ok = requests.post(endpoint, data={"subscribed_fields": "messages,message_reads", "access_token": "ptoken1"},
                       timeout=5)
    assert ok.json() == {"success": True}
    assert fake.subscriptions["p1"] == ["messages", "message_reads"]
    listed = requests.get(endpoint, params={"access_token": "ptoken1"}, timeout=5).json()
    assert listed["data"][0]["subscribed_fields"] == ["messages", "message_reads"]
    assert requests.delete(endpoint, params={"access_token": "ptoken1"}, timeout=5).json() == {"success": True}
    assert "p1" not in fake.subscriptions
    assert fake.requests_to("subscribed_apps")[0].param("subscribed_fields") == "messages,message_reads"


def send(fake, path, body, token="ptoken1"):
    return requests.post(url(fake, path), params={"access_token": token}, json=body, timeout=5)


def test_send_api_rules(fake):
    ok = send(fake, "/p1/messages", {"recipient": {"id": "u1"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}})
    assert ok.status_code == 200 and ok.json()["recipient_id"] == "u1" and ok.json()["message_id"].startswith("m_")
    no_tag = send(fake, "/me/messages", {"recipient": {"id": "u1"}, "messaging_type": "MESSAGE_TAG", "message": {"text": "x"}})
    assert no_tag.status_code == 400 and no_tag.json()["error"]["code"] == 100
    tagged = send(fake, "/me/messages", {"recipient": {"id": "u1"}, "messaging_type": "MESSAGE_TAG",
                                         "tag": "HUMAN_AGENT", "message": {"text": "x"}})
    assert tagged.status_code == 200
    action = send(fake, "/p1/messages", {"recipient": {"id": "u1"}, "sender_action": "typing_on"})
    assert action.json() == {"recipient_id": "u1"}
    both = send(fake, "/p1/messages", {"recipient": {"id": "u1"}, "sender_action": "mark_seen", "message": {"text": "x"}})
    assert both.status_code == 400
    too_long_ig = send(fake, "/ig1/messages", {"recipient": {"id": "u1"}, "messaging_type": "RESPONSE",
                                                "message": {"text": "x" * 1001}})
    assert too_long_ig.status_code == 400
    attachment = send(fake, "/ig1/messages", {"recipient": {"id": "u1"}, "messaging_type": "RESPONSE", "message": {
        "attachment": {"type": "image", "payload": {"url": "https://parley.test/f/1"}}}})
    assert attachment.status_code == 200
    wrong_page = send(fake, "/p2/messages", {"recipient": {"id": "u1"}, "messaging_type": "RESPONSE",
                                             "message": {"text": "x"}})
    assert wrong_page.status_code == 403
    assert [s["channel"] for s in fake.sent] == ["messenger", "messenger", "instagram"]


def test_whatsapp_cloud_send_read_and_number_check(fake):
    headers = {"Authorization": "Bearer watoken"}
    ok = requests.post(url(fake, "/n1/messages"), headers=headers, json={
        "messaging_product": "whatsapp", "to": "60123456789", "type": "text", "text": {"body": "hi"}}, timeout=5)
    assert ok.json()["contacts"] == [{"input": "60123456789", "wa_id": "60123456789"}]
    assert ok.json()["messages"][0]["id"].startswith("wamid.")
    read = requests.post(url(fake, "/n1/messages"), headers=headers, json={
        "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"}, timeout=5)
    assert read.json() == {"success": True}
    template = requests.post(url(fake, "/n1/messages"), headers=headers, json={
        "messaging_product": "whatsapp", "to": "60123456789", "type": "template",
        "template": {"name": "hello", "language": {"code": "en"}}}, timeout=5)
    assert template.status_code == 200
    number = requests.get(url(fake, "/n1"), headers=headers, timeout=5).json()
    assert number["display_phone_number"] == "+1 555-0100" and number["id"] == "n1"
    bad = requests.get(url(fake, "/n1"), headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bad.json()["error"]["code"] == 190
    unknown = requests.get(url(fake, "/n9"), headers=headers, timeout=5)
    assert unknown.json()["error"]["code"] == 100


def test_profiles_and_media(fake):
    fake.add_profile("u1", first_name="Siti", last_name="Rahman", profile_pic=fake.add_cdn_media(b"png", "image/png"))
    profile = requests.get(url(fake, "/u1"), params={"fields": "first_name,last_name", "access_token": "ptoken1"},
                           timeout=5).json()
    assert profile == {"id": "u1", "first_name": "Siti", "last_name": "Rahman"}
    media_id = fake.add_whatsapp_media(b"\x89PNG", "image/png", "watoken")
    info = requests.get(url(fake, f"/{media_id}"), headers={"Authorization": "Bearer watoken"}, timeout=5).json()
    assert info["mime_type"] == "image/png" and info["file_size"] == 4
    assert requests.get(info["url"], timeout=5).status_code == 401
    assert requests.get(info["url"], headers={"Authorization": "Bearer watoken"}, timeout=5).content == b"\x89PNG"


@pytest.mark.parametrize(
    "scripted, code, subcode",
    [(meta.token_expired(), 190, 463), (meta.outside_window(), 10, 2018278), (meta.user_unavailable(), 551, 1545041),
     (meta.rate_limited(613), 613, None), (meta.whatsapp_re_engagement(), 131047, None)],
)
def test_scripted_errors_have_graph_bodies(fake, scripted, code, subcode):
    fake.script(scripted, endpoint="send")
    answer = send(fake, "/p1/messages", {"recipient": {"id": "u1"}, "messaging_type": "RESPONSE", "message": {"text": "x"}})
    error = answer.json()["error"]
    assert error["code"] == code and error.get("error_subcode") == subcode
    assert error["type"] and error["fbtrace_id"] and error["message"]
    assert fake.sent == []
    # The script is consumed: the next send goes through.
    assert send(fake, "/p1/messages", {"recipient": {"id": "u1"}, "messaging_type": "RESPONSE",
                                       "message": {"text": "x"}}).status_code == 200


def test_hang_records_the_send_and_times_out_the_client(fake):
    release = threading.Event()
    fake.script(meta.hang(10, release), endpoint="send")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(url(fake, "/p1/messages"), params={"access_token": "ptoken1"}, timeout=(2, 0.3), json={
            "recipient": {"id": "u1"}, "messaging_type": "RESPONSE", "message": {"text": "x"}})
    release.set()
    assert len(fake.sent) == 1


def test_webhook_signature_helper():
    body = meta.webhook("page", [meta.messaging_entry("p1", [meta.messenger_text("p1", "u1", "hi", mid="m_1")])])
    expected = "sha256=" + hmac.new(b"secret1", body, hashlib.sha256).hexdigest()
    assert meta.signature(body, "secret1") == expected
    decoded = json.loads(body)
    assert decoded["entry"][0]["messaging"][0]["message"] == {"mid": "m_1", "text": "hi"}
