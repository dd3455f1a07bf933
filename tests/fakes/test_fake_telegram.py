"""The fake Bot API answers like Telegram's: the token in the path, `ok`/`result` and error shapes,
`retry_after`, webhooks, sends and their checks, getFile and the file download."""

import json

import pytest
import requests

from tests.fakes import telegram as fakes
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456789:AAF1abcdefghijklmnopqrstuvwxyz012345"


@pytest.fixture(scope="module")
def fake():
    server = FakeTelegram().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def setup(fake):
    fake.reset()
    fake.add_bot(TOKEN, username="fake_bot", first_name="Fake")
    fake.add_chat(TOKEN, 42, first_name="Ana")


def call(fake, method, token=TOKEN, **kwargs):
    response = requests.post(f"{fake.base_url}/bot{token}/{method}", timeout=5, **kwargs)
    return response.status_code, response.json()


def test_getme_and_the_token_in_the_path(fake):
    assert call(fake, "getMe") == (200, {"ok": True, "result": {
        "id": 123456789, "is_bot": True, "first_name": "Fake", "username": "fake_bot", "can_join_groups": True,
        "can_read_all_group_messages": False, "supports_inline_queries": False, "can_connect_to_business": False,
        "has_main_web_app": False}})
    assert call(fake, "GETME")[0] == 200  # method names are case-insensitive
    assert call(fake, "getMe", token="999:unknownTokenButWellShaped") == (
        401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    assert call(fake, "getMe", token="garbage") == (404, {"ok": False, "error_code": 404, "description": "Not Found"})
    assert call(fake, "noSuchMethod")[0] == 404
    fake.revoke(TOKEN)
    assert call(fake, "getMe")[0] == 401


def test_parameters_by_query_form_json_or_multipart(fake):
    for kwargs in ({"params": {"chat_id": 42, "text": "q"}}, {"data": {"chat_id": 42, "text": "f"}},
                   {"json": {"chat_id": 42, "text": "j"}}, {"files": {"chat_id": (None, "42"), "text": (None, "m")}}):
        status, answer = call(fake, "sendMessage", **kwargs)
        assert status == 200 and answer["result"]["chat"]["id"] == 42, answer
    assert [s["params"]["text"] for s in fake.sent] == ["q", "f", "j", "m"]
    ids = [s["result"]["message_id"] for s in fake.sent]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_send_checks_like_telegram(fake):
    assert call(fake, "sendMessage", data={"chat_id": 7, "text": "x"}) == (
        400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
    assert call(fake, "sendMessage", data={"chat_id": 42, "text": ""})[1]["description"] == "Bad Request: message text is empty"
    assert call(fake, "sendMessage", data={"chat_id": 42, "text": "x" * 4097})[1]["description"] == (
        "Bad Request: message is too long")
    markup = json.dumps({"inline_keyboard": [[{"text": "Yes", "callback_data": "y" * 65}]]})
    assert call(fake, "sendMessage", data={"chat_id": 42, "text": "x", "reply_markup": markup})[1]["description"] == (
        "Bad Request: BUTTON_DATA_INVALID")
    fake.block(TOKEN, 42)
    assert call(fake, "sendMessage", data={"chat_id": 42, "text": "x"}) == (
        403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
    assert fake.sent == []


def test_uploads_and_captions(fake):
    status, answer = call(fake, "sendPhoto", data={"chat_id": "42", "caption": "c"},
                          files={"photo": ("box.png", b"\x89PNG", "image/png")})
    assert status == 200 and answer["result"]["caption"] == "c" and len(answer["result"]["photo"]) == 2
    assert fake.sent[0]["params"]["photo"] == {"filename": "box.png", "content_type": "image/png", "content": b"\x89PNG"}
    assert call(fake, "sendDocument", data={"chat_id": 42})[1]["description"] == "Bad Request: there is no document in the request"
    assert call(fake, "sendDocument", data={"chat_id": 42, "caption": "x" * 1025},
                files={"document": ("a.pdf", b"%PDF", "application/pdf")})[1]["description"] == (
        "Bad Request: message caption is too long")


def test_scripted_errors_carry_retry_after(fake):
    fake.script(fakes.too_many_requests(9), method="sendMessage")
    assert call(fake, "sendMessage", data={"chat_id": 42, "text": "x"}) == (429, {
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 9", "parameters": {"retry_after": 9}})
    assert call(fake, "sendMessage", data={"chat_id": 42, "text": "x"})[0] == 200


def test_webhooks(fake):
    assert call(fake, "setWebhook", data={"url": "http://insecure.example/hook"})[1]["description"] == (
        "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
    assert call(fake, "setWebhook", data={"url": "https://x.example:9000/hook"})[1]["description"] == (
        "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
    assert call(fake, "setWebhook", data={"url": "https://x.example/hook", "secret_token": "bad token!"})[1][
        "description"] == "Bad Request: bad webhook: secret token contains unallowed characters"
    assert call(fake, "setWebhook", data={"url": "https://x.example/hook", "secret_token": "s3cr3t",
                                          "allowed_updates": '["message", "callback_query"]'}) == (
        200, {"ok": True, "result": True, "description": "Webhook was set"})
    info = call(fake, "getWebhookInfo")[1]["result"]
    assert info["url"] == "https://x.example/hook" and info["allowed_updates"] == ["message", "callback_query"]
    assert "last_error_date" not in info
    fake.set_delivery_error(TOKEN, "Connection refused", pending=3, at=1700000000)
    info = call(fake, "getWebhookInfo")[1]["result"]
    assert (info["last_error_date"], info["last_error_message"], info["pending_update_count"]) == (
        1700000000, "Connection refused", 3)
    assert call(fake, "deleteWebhook")[1] == {"ok": True, "result": True, "description": "Webhook was deleted"}
    assert call(fake, "getWebhookInfo")[1]["result"]["url"] == ""


def test_get_file_and_download(fake):
    file_id = fake.add_file(TOKEN, b"bytes!", "documents/file_7.pdf")
    status, answer = call(fake, "getFile", data={"file_id": file_id})
    assert status == 200 and answer["result"]["file_path"] == "documents/file_7.pdf" and answer["result"]["file_size"] == 6
    download = requests.get(f"{fake.base_url}/file/bot{TOKEN}/documents/file_7.pdf", timeout=5)
    assert (download.status_code, download.content) == (200, b"bytes!")
    assert requests.get(f"{fake.base_url}/file/bot999:other/documents/file_7.pdf", timeout=5).status_code == 404
    big = fake.add_file(TOKEN, b"x", "videos/big.mp4", size=21 * 1024 * 1024)
    assert call(fake, "getFile", data={"file_id": big})[1]["description"] == "Bad Request: file is too big"
    assert call(fake, "getFile", data={"file_id": "nope"})[1]["description"] == "Bad Request: invalid file_id"


def test_callback_queries_are_answered_once(fake):
    sent = call(fake, "sendMessage", data={"chat_id": 42, "text": "Pick", "reply_markup": json.dumps(
        {"inline_keyboard": [[{"text": "A", "callback_data": "A"}]]})})[1]["result"]
    update = fake.callback_update(TOKEN, fakes.user(42), sent, "A")
    query_id = update["callback_query"]["id"]
    assert call(fake, "answerCallbackQuery", data={"callback_query_id": query_id})[0] == 200
    assert call(fake, "answerCallbackQuery", data={"callback_query_id": query_id})[1]["description"] == (
        "Bad Request: query is too old and response timeout expired or query ID is invalid")
    assert fake.answered(TOKEN) == [query_id]
