"""Messenger end to end in Chromium: an admin connects a Facebook Page through (fake) Facebook
Login, a customer's message arrives live through the signed Meta webhook, the agent replies
through the Send API, and Meta's delivery and read watermarks turn the ticks."""

import time

import pytest
from playwright.sync_api import expect

from apps.conversations.models import Message
from apps.providers.models import Channel
from tests.fakes import meta as fakes
from tests.fixtures.browser import log_in, screenshot
from tests.fixtures.meta import APP_SECRET, PAGE_ID, PAGE_NAME

pytestmark = pytest.mark.browser

PSID = "6100000000000099"


def customer_writes(fake, server, item) -> None:
    body = fakes.webhook("page", [fakes.messaging_entry(PAGE_ID, [item])])
    assert fake.signed_post(f"{server.url}/webhooks/meta/", body, app_secret=APP_SECRET) == 200


def test_connect_page_receive_reply_and_see_delivered_and_read(new_page, asgi_server, fake_meta, meta_app, alice):
    fake_meta.add_profile(PSID, first_name="Ana", last_name="Silva")
    page = new_page()
    log_in(page, "alice")

    # Settings → Integrations → Connect Facebook Page: Facebook Login (the fake approves), pick the page.
    page.goto("/settings/integrations/")
    page.get_by_role("button", name="Connect Facebook Page").click()
    page.get_by_role("button", name="Connect this Page").click()
    expect(page.get_by_text(PAGE_NAME).first).to_be_visible()
    expect(page.get_by_text("Connected").first).to_be_visible()
    channel = Channel.objects.get(kind="messenger", address=PAGE_ID)
    assert channel.status == "active"
    assert fake_meta.subscriptions[PAGE_ID]
    screenshot(page, "messenger-connected")

    # The customer writes; the conversation appears, named from the Graph profile.
    customer_writes(fake_meta, asgi_server, fakes.messenger_text(PAGE_ID, PSID, "Hi, do you ship to Penang?"))
    message = Message.objects.get(text="Hi, do you ship to Penang?")
    page.goto(f"/conversations/{message.conversation_id}/")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    expect(page.locator("#messages")).to_contain_text("Hi, do you ship to Penang?")
    expect(page.locator(".conversation-header")).to_contain_text("Ana Silva")

    # A second message arrives live in the open conversation.
    customer_writes(fake_meta, asgi_server, fakes.messenger_text(PAGE_ID, PSID, "And how long does it take?"))
    expect(page.locator("#messages .bubble-row").filter(has_text="And how long does it take?")).to_be_visible()

    # The agent replies: the Send API answers as a RESPONSE within the 24-hour window.
    text = page.get_by_label("Message", exact=True)
    text.fill("Yes! 2-3 working days to Penang.")
    text.press("Enter")
    reply = page.locator("#messages .bubble-row.outbound").filter(has_text="2-3 working days")
    expect(reply.locator("[aria-label=Sent]")).to_be_visible()
    sent = [s for s in fake_meta.sent if s["json"].get("message", {}).get("text") == "Yes! 2-3 working days to Penang."]
    assert len(sent) == 1
    assert sent[0]["json"]["messaging_type"] == "RESPONSE"
    assert sent[0]["json"]["recipient"] == {"id": PSID}

    # Meta's watermarks: delivered, then read.
    now_ms = int(time.time() * 1000) + 1000
    customer_writes(fake_meta, asgi_server, fakes.messenger_watermark(PAGE_ID, PSID, "delivery", now_ms))
    expect(reply.locator("[aria-label=Delivered]")).to_be_visible()
    customer_writes(fake_meta, asgi_server, fakes.messenger_watermark(PAGE_ID, PSID, "read", now_ms))
    expect(reply.locator("[aria-label=Read]")).to_be_visible()
    screenshot(page, "messenger-read")
    assert not page.errors
