"""Telegram end to end in Chromium: an admin connects a bot through the API (getMe + setWebhook on
the fake Bot API), a customer's message arrives live through the webhook Telegram posts, the
agent replies with reply buttons, the customer taps one and edits a message, all live; the bot
token and the webhook secret never reach the page."""

import json

import pytest
import requests
from playwright.sync_api import expect

from apps.accounts import services as account_services
from apps.accounts.models import Membership
from apps.conversations.models import Message
from apps.providers.models import Channel
from tests.fakes import telegram as fakes
from tests.fixtures.browser import log_in, screenshot
from tests.fixtures.telegram import BOT_TOKEN, CHAT_ID

pytestmark = pytest.mark.browser


def test_a_telegram_message_arrives_live_and_the_agent_replies(new_page, asgi_server, fake_telegram, alice, acme):
    fake_telegram.allow_http_webhooks = True  # the live server speaks plain HTTP on 127.0.0.1
    membership = Membership.objects.get(user=alice, organization=acme)
    _, key = account_services.api_token_create(membership=membership, name="e2e")
    response = requests.post(f"{asgi_server.url}/api/v1/channels/", timeout=20,
                             headers={"Authorization": f"Bearer {key}"},
                             json={"kind": "telegram", "name": "Acme bot", "credentials": {"bot_token": BOT_TOKEN}})
    assert response.status_code == 201, response.text
    assert BOT_TOKEN not in response.text
    channel = Channel.objects.get(kind="telegram")
    assert fake_telegram.webhook(BOT_TOKEN)["url"] == f"{asgi_server.url}/webhooks/telegram/{channel.uuid}/"

    page = new_page()
    bodies, frames = [], []
    page.on("response", lambda r: bodies.append(r))
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    log_in(page, "alice")

    # Ana writes to the bot: Telegram posts the Update with the secret token.
    ana = fakes.user(CHAT_ID, "Ana", "Silva", "anasilva")
    assert fake_telegram.deliver(BOT_TOKEN, fakes.update(message=fakes.message(ana, 17, text="Hi, do you ship to Penang?"))) == 200
    first = Message.objects.get(text="Hi, do you ship to Penang?")
    page.goto(f"/conversations/{first.conversation_id}/")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    expect(page.locator(".conversation-header")).to_contain_text("Ana Silva")

    # A second message arrives live; a forged one is refused.
    assert fake_telegram.deliver(BOT_TOKEN, fakes.update(message=fakes.message(ana, 18, text="And to Langkawi?"))) == 200
    assert fake_telegram.deliver(BOT_TOKEN, fakes.update(message=fakes.message(ana, 19, text="forged")),
                                 secret="not-the-secret") == 403
    expect(page.locator("#messages .bubble-row.inbound").filter(has_text="And to Langkawi?")).to_be_visible()

    # The agent replies with two reply buttons.
    page.get_by_text("Reply buttons").click()
    page.get_by_label("Button 1").fill("Yes, please")
    page.get_by_label("Button 2").fill("No, thanks")
    text = page.get_by_label("Message", exact=True)
    text.fill("We ship to both. Shall I send a quote?")
    screenshot(page, "telegram-composer-buttons")
    text.press("Enter")
    reply = page.locator("#messages .bubble-row.outbound").filter(has_text="Shall I send a quote?")
    expect(reply.locator("[aria-label=Sent]")).to_be_visible()
    expect(reply.locator(".bubble-buttons li")).to_have_text(["Yes, please", "No, thanks"])
    [sent] = [s for s in fake_telegram.sent if s["method"] == "sendMessage"]
    assert sent["params"]["chat_id"] == str(CHAT_ID)
    assert json.loads(sent["params"]["reply_markup"])["inline_keyboard"] == [
        [{"text": "Yes, please", "callback_data": "Yes, please"}], [{"text": "No, thanks", "callback_data": "No, thanks"}]]

    # Ana taps a button: her reply arrives live, and the tap is answered.
    tap = fake_telegram.callback_update(BOT_TOKEN, ana, sent["result"], "Yes, please")
    assert fake_telegram.deliver(BOT_TOKEN, tap) == 200
    expect(page.locator("#messages .bubble-row.inbound").filter(has_text="Yes, please")).to_be_visible()
    assert fake_telegram.answered(BOT_TOKEN) == [tap["callback_query"]["id"]]

    # Ana edits her second message: the bubble changes in place and says "edited".
    edited = fakes.message(ana, 18, text="And to Langkawi and Tioman?")
    edited["edit_date"] = edited["date"] + 30
    assert fake_telegram.deliver(BOT_TOKEN, fakes.update(edited_message=edited)) == 200
    bubble = page.locator("#messages .bubble-row.inbound").filter(has_text="And to Langkawi and Tioman?")
    expect(bubble.locator(".bubble-edited")).to_have_text("edited")
    expect(page.locator("#messages .bubble-row.inbound").filter(has_text="Langkawi")).to_have_count(1)
    screenshot(page, "telegram-conversation")

    # Nothing the browser received carries the bot token or the webhook secret.
    channel.refresh_from_db()
    secrets = [BOT_TOKEN, channel.secrets["webhook_secret"]]
    received = [page.content(), *frames]
    for response in bodies:
        try:
            received.append(response.text())
        except Exception:  # noqa: BLE001 - redirects and other bodiless answers
            continue
    assert len(received) > 5
    assert not [secret for secret in secrets for chunk in received if secret in chunk]
    assert not page.errors
