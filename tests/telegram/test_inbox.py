"""Telegram in the inbox and the API: the conversation and its composer (reply buttons), the list
filter, "New message" (only contacts who started the bot), the messages API; the bot token and
the webhook secret never reach a page, a fragment or an answer."""

import json

import pytest
from django.urls import reverse

from apps.contacts import services as contact_services
from apps.conversations.models import Message
from tests import factories
from tests.fixtures.telegram import BOT_TOKEN, CHAT_ID
from tests.inbox.test_views import Elements, htmx
from tests.telegram.conftest import deliver, payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(telegram_channel, django_capture_on_commit_callbacks):
    deliver(django_capture_on_commit_callbacks, telegram_channel, payload("text"))
    return Message.objects.get().conversation


def no_secret(channel, text: str) -> bool:
    return BOT_TOKEN not in text and channel.secrets["webhook_secret"] not in text


def test_the_conversation_shows_telegram_and_a_composer_with_reply_buttons(alice_client, conversation, telegram_channel):
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert "Hi, do you ship to Penang?" in html and "ch-telegram" in html
    inputs = [attrs for tag, attrs in Elements(html).elements if tag == "input" and attrs.get("name") == "buttons"]
    assert len(inputs) == 6 and all(attrs["maxlength"] == "64" for attrs in inputs)
    assert "Reply buttons" in html and 'accept="application/msword' in html
    assert no_secret(telegram_channel, html)


def test_a_whatsapp_composer_has_no_reply_buttons(alice_client, whatsapp, customer):
    conversation = factories.ConversationFactory(channel=whatsapp, contact=customer)
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert 'name="buttons"' not in html and "Reply buttons" not in html


def test_the_agent_replies_with_buttons_from_the_composer(alice_client, conversation, fake_telegram,
                                                          django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("inbox:send", args=[conversation.pk]),
                                     {"text": "Shall we send a replacement?", "buttons": ["Yes, please", "", "No, a refund"],
                                      "client_token": "tg-1"}, **htmx("messages"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<ul class="bubble-buttons"' in html and "No, a refund" in html
    [sent] = fake_telegram.sent
    assert [row[0]["text"] for row in json.loads(sent["params"]["reply_markup"])["inline_keyboard"]] == [
        "Yes, please", "No, a refund"]
    message = Message.objects.get(client_token="tg-1")
    assert (message.status, message.buttons) == ("sent", [{"text": "Yes, please"}, {"text": "No, a refund"}])


def test_a_refused_send_keeps_the_buttons_in_the_composer(alice_client, conversation):
    response = alice_client.post(reverse("inbox:send", args=[conversation.pk]),
                                 {"text": "Pick", "buttons": ["x" * 65, "Keep me"]}, **htmx("messages"))
    assert response.status_code == 422
    html = response.content.decode()
    assert "A button can say at most 64 characters" in html
    values = [attrs.get("value") for tag, attrs in Elements(html).elements if tag == "input" and attrs.get("name") == "buttons"]
    assert values[:2] == ["x" * 65, "Keep me"]  # what the agent typed, to correct
    assert not Message.objects.filter(direction="outbound").exists()


def test_the_list_filters_by_the_telegram_channel(alice_client, conversation, telegram_channel, whatsapp, customer):
    other = factories.ConversationFactory(channel=whatsapp, contact=customer)
    factories.MessageFactory(conversation=other, text="On WhatsApp")
    html = alice_client.get(reverse("inbox:index")).content.decode()
    assert f'<option value="{telegram_channel.pk}"' in html
    filtered = alice_client.get(reverse("inbox:index"), {"channel": telegram_channel.pk}).content.decode()
    assert f'id="conversation-{conversation.pk}"' in filtered and f'id="conversation-{other.pk}"' not in filtered


def test_new_message_offers_the_bot_and_only_contacts_who_started_it(alice_client, conversation, telegram_channel, acme,
                                                                     fake_telegram, django_capture_on_commit_callbacks):
    html = alice_client.get(reverse("inbox:new")).content.decode()
    assert f'href="{reverse("inbox:new-split", args=[telegram_channel.pk])}"' in html
    assert "Telegram is not configured for this organization." not in html

    stranger = factories.ContactFactory(organization=acme, name="Never wrote on Telegram")
    blocked, _ = contact_services.contact_resolve(organization=acme, kind="telegram", address="5550077", name="Bea")
    contact_services.consent_block(contact=blocked, kind="telegram", reason="The contact blocked the bot in Telegram.")
    split = alice_client.get(reverse("inbox:new-split", args=[telegram_channel.pk])).content.decode()
    assert "Ana Silva" in split and "Never wrote on Telegram" not in split and "Bea" not in split

    # The API refuses the stranger in words, before anything is queued.
    response = alice_client.post(f"/api/v1/contacts/{stranger.pk}/messages/",
                                 {"channel_id": telegram_channel.pk, "text": "Hello"}, content_type="application/json")
    assert response.status_code == 400
    assert json.loads(response.content)["error"] == {
        "code": "no_address", "message": "This contact cannot be reached on Telegram: no Telegram address is known for them."}

    # Ana gets a new message from "New message".
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("inbox:new-send", args=[telegram_channel.pk]),
                                     {"contact": conversation.contact_id, "text": "A new message"}, **htmx("messages"))
    assert response.status_code == 200
    assert fake_telegram.sent[-1]["params"] == {"chat_id": str(CHAT_ID), "text": "A new message"}


def test_the_messages_api_sends_buttons_and_shows_edits(alice_client, conversation, fake_telegram, telegram_channel,
                                                        django_capture_on_commit_callbacks):
    url = f"/api/v1/conversations/{conversation.pk}/messages/"
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(url, {"text": "Rate us?", "buttons": ["👍", "👎"]}, content_type="application/json")
    assert response.status_code == 202, response.content
    assert json.loads(response.content)["buttons"] == ["👍", "👎"]
    deliver(django_capture_on_commit_callbacks, telegram_channel, payload("edited_message"))
    listed = json.loads(alice_client.get(url).content)["results"]
    by_text = {m["text"]: m for m in listed}
    edited = by_text["Hi, do you ship to Penang and Langkawi?"]
    assert edited["edited_at"] is not None and edited["buttons"] == []
    assert by_text["Rate us?"]["buttons"] == ["👍", "👎"] and by_text["Rate us?"]["edited_at"] is None
    assert no_secret(telegram_channel, json.dumps(listed))


def test_no_page_or_answer_carries_the_bot_token(alice_client, conversation, telegram_channel):
    pages = [
        alice_client.get(reverse("inbox:index")),
        alice_client.get(reverse("inbox:conversation", args=[conversation.pk])),
        alice_client.get(reverse("inbox:contact", args=[conversation.contact_id])),
        alice_client.get(reverse("inbox:new")),
        alice_client.get(reverse("inbox:new-split", args=[telegram_channel.pk])),
        alice_client.get("/api/v1/channels/"),
        alice_client.get(f"/api/v1/channels/{telegram_channel.pk}/"),
        alice_client.get(f"/api/v1/conversations/{conversation.pk}/"),
    ]
    for response in pages:
        assert response.status_code == 200
        assert no_secret(telegram_channel, response.content.decode())
