"""The agent inbox in real Chromium, against the real ASGI app, with Twilio faked over HTTP."""

import base64
import re
import threading
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.contacts import services as contact_services
from apps.conversations.models import Message
from tests import factories
from tests.fakes.twilio import hang
from tests.fixtures.browser import in_thread, log_in, post_signed, screenshot

pytestmark = pytest.mark.browser

# A 1×1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def conversation(asgi_server, fake_twilio, alice, bob, charlie, whatsapp, customer):
    """Siti wrote an hour ago: the 24-hour window is open."""
    an_hour_ago = timezone.now() - timedelta(hours=1)
    conversation = factories.ConversationFactory(
        channel=whatsapp, contact=customer, last_inbound_at=an_hour_ago, last_message_at=an_hour_ago,
        last_message_preview="Hi, is my order shipped?",
    )
    factories.MessageFactory(conversation=conversation, text="Hi, is my order shipped?", created_at=an_hour_ago,
                             external_id="SM" + "1" * 32)
    return conversation


def inbound(asgi_server, channel, text: str, *, sender: str = "+60123456789") -> None:
    """Siti writes: a signed Twilio webhook, as Twilio posts it."""
    url = f"{asgi_server.url}/webhooks/twilio/{channel.uuid}/"
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": factories.TEST_ACCOUNT_SID,
        "From": f"whatsapp:{sender}",
        "To": factories.TEST_SENDER,
        "Body": text,
        "NumMedia": "0",
        "ProfileName": "Siti Rahman",
        "WaId": sender.lstrip("+"),
    }
    response = post_signed(url, params, factories.TEST_AUTH_TOKEN)
    assert response.status_code == 200, response.text


def open_conversation(page, conversation):
    page.goto(f"/conversations/{conversation.pk}/")
    expect(page.locator("#messages")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-live", "open")


def bubble(page, text: str):
    return page.locator("#messages .bubble-row").filter(has_text=text)


def test_send_whatsapp_text_and_image_from_new_message(new_page, conversation, fake_twilio):
    page = new_page()
    log_in(page, "alice")
    expect(page.locator("#conversation-list")).to_contain_text("Siti Rahman")
    screenshot(page, "inbox")

    page.locator(".topbar").get_by_role("link", name="New message").click()
    expect(page.get_by_text("Email is not configured for this organization.")).to_be_visible()
    page.locator("a.choice", has_text="WhatsApp").click()
    page.get_by_label("Search contacts").fill("siti")
    page.locator("#contact-results").get_by_text("Siti Rahman").click()
    expect(page.locator("#thread-pane h2")).to_have_text("Siti Rahman")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    expect(bubble(page, "Hi, is my order shipped?")).to_be_visible()

    text = page.get_by_label("Message", exact=True)
    text.fill("Your order ships today.")
    text.press("Shift+Enter")
    text.press_sequentially("Tracking number follows.")
    page.locator("#composer input[type=file]").set_input_files(
        {"name": "receipt.png", "mimeType": "image/png", "buffer": PNG}
    )
    expect(page.locator("#composer [data-chips]")).to_contain_text("receipt.png")
    screenshot(page, "send-flow")

    # Twilio holds its answer: the bubble shows, pending, while the send is in flight.
    release = threading.Event()
    fake_twilio.script(hang(seconds=15, release=release))
    text.press("Enter")
    sent = bubble(page, "Your order ships today.")
    expect(sent).to_be_visible()
    expect(sent.locator("[aria-label=Sending]")).to_be_visible()
    expect(sent.locator(".bubble-text br")).to_have_count(1)  # the line break is kept
    expect(sent.locator(".bubble-text")).to_contain_text("Tracking number follows.")
    thumbnail = sent.locator("img[alt='receipt.png']")
    expect(thumbnail).to_have_count(1)
    release.set()
    expect(sent.locator("[aria-label=Sent]")).to_be_visible()
    # The thumbnail is our own copy of the upload, served to the agent's browser.
    thumbnail.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth === 1", arg=thumbnail.element_handle(), timeout=5000)
    expect(page.locator("#messages .bubble-row").filter(has_text="Your order ships today.")).to_have_count(1)
    expect(text).to_have_value("")

    request = fake_twilio.sent[-1]
    assert request["body"] == "Your order ships today.\nTracking number follows."
    assert request["num_media"] == "1"
    screenshot(page, "send-flow-sent")
    assert not page.errors


def test_inbound_message_and_delivery_ticks_arrive_live(new_page, conversation, fake_twilio, alice, asgi_server):
    from apps.conversations import sending

    membership = alice.memberships.get()
    message = in_thread(sending.message_send, membership=membership, conversation=conversation, text="We are on it.")
    message.refresh_from_db()
    assert message.status == Message.Status.SENT

    page = new_page()
    log_in(page, "alice")
    open_conversation(page, conversation)
    ours = bubble(page, "We are on it.")
    expect(ours.locator("[aria-label=Sent]")).to_be_visible()

    inbound(asgi_server, conversation.channel, "Thanks!\nSee you")
    arrived = bubble(page, "Thanks!")
    expect(arrived).to_be_visible(timeout=2000)
    expect(arrived).to_contain_text("Siti Rahman")
    # Rendered by the socket in the agent's own zone (the browser runs in Kuala Lumpur).
    expect(arrived.locator("time")).to_have_attribute("title", re.compile(r"\(\+08\)$"))
    expect(page.locator("#conversation-list a").first).to_contain_text("Thanks! See you")
    page.wait_for_timeout(500)
    expect(page.locator("#conversation-list .badge")).to_have_count(0)  # read as it arrives

    fake_twilio.post_status_callback(message.external_id, "delivered")
    expect(ours.locator("[aria-label=Delivered]")).to_be_visible(timeout=2000)
    fake_twilio.post_status_callback(message.external_id, "read")
    expect(ours.locator(".tick-read")).to_be_visible(timeout=2000)
    assert page.url.endswith(f"/conversations/{conversation.pk}/")  # never reloaded
    screenshot(page, "conversation-live")
    assert not page.errors


def test_refused_send_shows_the_sentence_and_keeps_the_text(new_page, conversation, customer):
    page = new_page()
    log_in(page, "alice")
    open_conversation(page, conversation)
    contact_services.consent_opt_out(contact=customer, kind="whatsapp", reason="STOP")

    text = page.get_by_label("Message", exact=True)
    text.fill("Can I help with anything else?")
    text.press("Enter")
    expect(page.locator("#composer [role=alert]")).to_have_text("This contact has unsubscribed from WhatsApp messages.")
    expect(page.get_by_label("Message", exact=True)).to_have_value("Can I help with anything else?")
    assert not Message.objects.filter(text="Can I help with anything else?").exists()


def test_another_organization_sees_none_of_it(new_page, conversation, asgi_server):
    page = new_page()
    log_in(page, "charlie")
    expect(page.locator("#conversation-list")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("Siti Rahman")
    response = page.goto(f"/conversations/{conversation.pk}/")
    assert response.status == 404
    assert "Hi, is my order shipped?" not in page.content()
    response = page.goto(f"/contacts/{conversation.contact_id}/")
    assert response.status == 404

    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    inbound(asgi_server, conversation.channel, "Only Acme may read this")
    page.wait_for_timeout(1000)
    expect(page.locator("body")).not_to_contain_text("Only Acme may read this")


def test_customer_markup_stays_inert_text(new_page, conversation, asgi_server):
    page = new_page()
    log_in(page, "alice")
    open_conversation(page, conversation)

    inbound(asgi_server, conversation.channel, "<img src=x onerror=window.__xss=1>")
    inbound(asgi_server, conversation.channel, '<script>window.__xss=1</script> <a href="javascript:window.__xss=1" hx-get="/logout/">x</a>')
    inbound(asgi_server, conversation.channel, "See https://example.com/track?id=1 please")
    expect(bubble(page, "<img src=x onerror=window.__xss=1>")).to_be_visible(timeout=2000)
    expect(bubble(page, "<script>window.__xss=1</script>")).to_be_visible(timeout=2000)
    link = bubble(page, "See https://example.com").locator("a")
    expect(link).to_have_attribute("href", "https://example.com/track?id=1")
    expect(link).to_have_attribute("rel", re.compile(r"noopener.*noreferrer.*nofollow|nofollow.*noopener"))
    assert page.evaluate("window.__xss") is None
    assert page.locator("#messages img[src=x]").count() == 0
    assert page.locator("#messages script").count() == 0
    page.reload()
    expect(bubble(page, "<img src=x onerror=window.__xss=1>")).to_be_visible()
    assert page.evaluate("window.__xss") is None


def test_page_resyncs_after_its_socket_drops(new_page, conversation, asgi_server):
    page = new_page()
    log_in(page, "alice")
    open_conversation(page, conversation)

    page.evaluate("document.querySelector('[ws-connect]')['htmx-internal-data'].webSocket.socket.close()")
    expect(page.locator("body")).not_to_have_attribute("data-live", "open")
    # Written while the page had no socket: no frame will ever carry it.
    inbound(asgi_server, conversation.channel, "Sent while you were away")
    expect(bubble(page, "Sent while you were away")).to_be_visible(timeout=8000)
    expect(page.locator("body")).to_have_attribute("data-live", "open", timeout=8000)
    expect(page.locator("#messages .bubble-row").filter(has_text="Sent while you were away")).to_have_count(1)


def test_page_polls_when_the_socket_cannot_connect(new_page, conversation, asgi_server):
    page = new_page()
    # A proxy that refuses websockets: every attempt is closed at once.
    page.route_web_socket(re.compile(r"/ws/inbox/"), lambda ws: ws.close())
    log_in(page, "alice")
    page.goto(f"/conversations/{conversation.pk}/")
    expect(page.locator("body")).to_have_attribute("data-live", "polling", timeout=8000)
    inbound(asgi_server, conversation.channel, "Polled into view")
    expect(bubble(page, "Polled into view")).to_be_visible(timeout=8000)
    expect(page.locator("#conversation-list a").first).to_contain_text("Polled into view")


def test_inbox_at_phone_width(new_page, conversation):
    page = new_page(width=390, height=844)
    log_in(page, "alice")
    expect(page.locator("#conversation-list")).to_contain_text("Siti Rahman")
    screenshot(page, "inbox-phone")
    page.locator("#conversation-list").get_by_text("Siti Rahman").click()
    expect(bubble(page, "Hi, is my order shipped?")).to_be_visible()
    screenshot(page, "conversation-phone")
