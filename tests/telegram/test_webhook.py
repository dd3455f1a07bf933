"""/webhooks/telegram/<uuid>/: the secret token header, Updates recorded once by update_id,
message ids keyed by chat, bad input (403, 400 logged, duplicates, concurrency), never a 5xx."""

import json
import logging
import threading

import pytest
from django.db import connection, connections
from django.test import Client

from apps.contacts.models import Contact, ContactIdentity
from apps.conversations.models import Conversation, Message
from apps.providers import services
from apps.providers.models import InboundEvent
from tests.telegram.conftest import deliver, payload, post_update, webhook_path

pytestmark = pytest.mark.django_db


def nothing_stored() -> bool:
    return not InboundEvent.objects.exists() and not Message.objects.exists() and not Contact.objects.exists()


def test_a_text_update_is_recorded_once_and_lands_in_a_conversation(telegram_channel, django_capture_on_commit_callbacks):
    body = payload("text")
    response = deliver(django_capture_on_commit_callbacks, telegram_channel, body)

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.provider, event.destination, event.event_id, event.kind, event.ref, event.state) == (
        "telegram", str(telegram_channel.uuid), str(body["update_id"]), "message", "5550001:17", "processed")
    message = Message.objects.select_related("conversation__contact").get()
    assert (message.direction, message.text, message.external_id, message.status) == (
        "inbound", "Hi, do you ship to Penang?", "5550001:17", "received")
    assert message.created_at.timestamp() == 1764633600  # Telegram's date, not when we processed it
    contact = message.conversation.contact
    assert contact.name == "Ana Silva" and contact.custom_attributes == {"telegram_username": "@anasilva"}
    assert list(contact.identities.values_list("kind", "address")) == [("telegram", "5550001")]
    assert contact.consent("telegram").opted_in  # they wrote first
    assert message.conversation.last_message_preview == "Hi, do you ship to Penang?"


def test_the_same_update_again_is_a_no_op(telegram_channel, django_capture_on_commit_callbacks):
    body = payload("text")
    assert deliver(django_capture_on_commit_callbacks, telegram_channel, body).status_code == 200
    assert deliver(django_capture_on_commit_callbacks, telegram_channel, body).status_code == 200
    # A redelivery with the same update_id is the same update, whatever else differs.
    body["message"]["text"] = "changed in transit"
    assert deliver(django_capture_on_commit_callbacks, telegram_channel, body).status_code == 200
    assert InboundEvent.objects.count() == 1
    assert list(Message.objects.values_list("text", flat=True)) == ["Hi, do you ship to Penang?"]


def test_message_ids_repeat_across_chats_so_both_messages_are_kept(telegram_channel, django_capture_on_commit_callbacks):
    first = payload("text")
    second = payload("text")
    second["message"]["chat"]["id"] = second["message"]["from"]["id"] = 5550002
    second["message"]["text"] = "Same message id, another chat"
    deliver(django_capture_on_commit_callbacks, telegram_channel, first)
    deliver(django_capture_on_commit_callbacks, telegram_channel, second)
    assert sorted(Message.objects.values_list("external_id", flat=True)) == ["5550001:17", "5550002:17"]
    assert Conversation.objects.count() == 2


@pytest.mark.parametrize("secret", ["", "wrong-secret", "é" * 40])
def test_a_wrong_or_missing_secret_token_is_403_and_stores_nothing(telegram_channel, secret, caplog):
    with caplog.at_level(logging.WARNING, logger="apps.providers.webhooks"):
        response = post_update(telegram_channel, payload("text"), secret=secret)
    assert response.status_code == 403
    assert nothing_stored()
    assert "bad signature" in caplog.text and telegram_channel.secrets["webhook_secret"] not in caplog.text


def test_another_channel_s_secret_is_refused(telegram_channel, acme, fake_telegram):
    from tests.fixtures.telegram import BOT_TOKEN

    other = services.channel_create(organization=acme, kind="telegram", name="Other", values={"bot_token": BOT_TOKEN})
    response = post_update(telegram_channel, payload("text"), secret=other.secrets["webhook_secret"])
    assert response.status_code == 403 and nothing_stored()


@pytest.mark.parametrize("raw", [
    b"not json",
    b"\xff\xfe",
    b"[]",
    b'"update"',
    b"{}",
    b'{"update_id": "712340001", "message": {}}',
    b'{"update_id": true}',
    b'{"update_id": 1.5}',
])
def test_a_malformed_body_is_400_logged_and_stores_nothing(telegram_channel, raw, caplog):
    with caplog.at_level(logging.WARNING, logger="apps.providers.webhooks"):
        response = post_update(telegram_channel, raw)
    assert response.status_code == 400
    assert nothing_stored()
    assert "malformed" in caplog.text


@pytest.mark.parametrize("update", [
    {"message": "hello"},
    {"message": {"chat": "x", "text": 7}},
    {"message": {"message_id": "x", "chat": {"id": 5550001, "type": "private"}, "text": ["a"]}},
    {"message": {"message_id": 9, "chat": {"id": 5550001, "type": "private"}, "text": 42, "date": "yesterday",
                 "photo": "nope", "from": []}},
    {"edited_message": {"message_id": 9, "chat": {"id": 5550001, "type": "private"}, "edit_date": None}},
    {"callback_query": {"id": 5, "from": "x"}},
    {"callback_query": {"id": "q1", "from": {"id": 5550001}, "data": {"nested": True}}},
    {"my_chat_member": {"chat": {"id": 5550001, "type": "private"}, "new_chat_member": "kicked"}},
    {"inline_query": {"id": "1", "from": {"id": 1}, "query": "x", "offset": ""}},
    {"poll": {"id": "1"}},
])
def test_odd_but_valid_updates_are_kept_and_never_answer_5xx(telegram_channel, update,
                                                             django_capture_on_commit_callbacks):
    body = {"update_id": 990000001, **update}
    response = deliver(django_capture_on_commit_callbacks, telegram_channel, body)
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.body == body and event.state == "processed", event.last_error


def test_a_message_with_a_field_of_the_wrong_type_keeps_the_rest(telegram_channel, django_capture_on_commit_callbacks):
    body = payload("text")
    body["message"]["date"] = "yesterday"
    body["message"]["from"]["last_name"] = 42
    deliver(django_capture_on_commit_callbacks, telegram_channel, body)
    message = Message.objects.select_related("conversation__contact").get()
    assert message.text == "Hi, do you ship to Penang?" and message.conversation.contact.name == "Ana"


@pytest.mark.parametrize("name", ["group_message", "channel_post"])
def test_group_and_channel_posts_are_kept_as_events_and_not_shown(telegram_channel, name,
                                                                 django_capture_on_commit_callbacks):
    response = deliver(django_capture_on_commit_callbacks, telegram_channel, payload(name))
    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.kind, event.state) == ("other", "processed")
    assert not Message.objects.exists() and not Contact.objects.exists()


def test_an_unknown_channel_is_404(db, client):
    response = client.post("/webhooks/telegram/5b0c4b8e-3f6a-4c9e-8f59-000000000000/", data=b"{}",
                           content_type="application/json")
    assert response.status_code == 404


def test_the_telegram_url_of_a_twilio_channel_is_404(whatsapp, client):
    response = client.post(f"/webhooks/telegram/{whatsapp.uuid}/", data=json.dumps(payload("text")),
                           content_type="application/json")
    assert response.status_code == 404 and nothing_stored()


def test_a_get_is_not_a_webhook(telegram_channel, client):
    assert client.get(webhook_path(telegram_channel)).status_code == 405


# Concurrency (PostgreSQL: SQLite's test database locks whole tables) ------------------------------


@pytest.fixture
def postgresql(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("concurrency tests need PostgreSQL")


def _post_from_threads(channel, bodies: list[dict]) -> list[int]:
    statuses: list[int] = []
    barrier = threading.Barrier(len(bodies))

    def run(body):
        try:
            client = Client()
            barrier.wait(timeout=10)
            statuses.append(post_update(channel, body, client=client).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_the_same_update_ten_times_at_once_is_one_event_and_one_message(postgresql, telegram_channel):
    body = payload("text")
    assert _post_from_threads(telegram_channel, [body] * 10) == [200] * 10
    assert InboundEvent.objects.count() == 1 and InboundEvent.objects.get().state == "processed"
    assert Message.objects.count() == 1


def test_five_updates_from_a_new_chat_at_once_make_one_contact_and_one_conversation(postgresql, telegram_channel):
    bodies = []
    for n in range(5):
        body = payload("text")
        body["message"]["message_id"] = 40 + n
        body["message"]["text"] = f"message {n}"
        bodies.append(body)
    assert _post_from_threads(telegram_channel, bodies) == [200] * 5
    assert Contact.objects.count() == 1 and Conversation.objects.count() == 1
    assert ContactIdentity.objects.get().address == "5550001"
    assert sorted(Message.objects.values_list("text", flat=True)) == [f"message {n}" for n in range(5)]
    assert set(InboundEvent.objects.values_list("state", flat=True)) == {"processed"}
