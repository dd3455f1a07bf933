"""The open conversation's thread in real Chromium: where it scrolls as messages arrive by
socket, by the agent's own send and with older pages; and frames that the page has no place for
leave the console quiet."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests import factories
from tests.e2e.test_inbox_live import bubble, inbound, open_conversation
from tests.fixtures.browser import log_in

pytestmark = pytest.mark.browser

DISTANCE_TO_BOTTOM = "(() => { const m = document.getElementById('messages'); return m.scrollHeight - m.scrollTop - m.clientHeight; })()"


@pytest.fixture
def long_conversation(asgi_server, fake_twilio, alice, whatsapp, customer):
    """Siti and alice wrote `count` messages over the last hour: more than the thread shows at once."""

    def make(count):
        start = timezone.now() - timedelta(hours=1)
        conversation = factories.ConversationFactory(
            channel=whatsapp, contact=customer, last_inbound_at=start, last_message_at=start,
            last_message_preview="Message 0",
        )
        for n in range(count):
            factories.MessageFactory(
                conversation=conversation, text=f"Message {n}", created_at=start + timedelta(seconds=n),
                direction="outbound" if n % 3 == 0 else "inbound", status="read",
                sender=alice if n % 3 == 0 else None, external_id=f"SM{n:032d}",
            )
        return conversation

    return make


def console_errors(page) -> list[str]:
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return errors


def test_thread_follows_new_messages_only_while_the_agent_is_at_the_bottom(new_page, long_conversation, asgi_server):
    conversation = long_conversation(40)
    page = new_page()
    errors = console_errors(page)
    log_in(page, "alice")
    open_conversation(page, conversation)
    assert page.evaluate(DISTANCE_TO_BOTTOM) < 2  # opens at the newest message

    inbound(asgi_server, conversation.channel, "Are you still there?")
    expect(bubble(page, "Are you still there?")).to_be_visible(timeout=2000)
    page.wait_for_function(f"{DISTANCE_TO_BOTTOM} < 2")

    # Reading further up: a new message does not pull the thread away from it.
    page.evaluate("document.getElementById('messages').scrollTop = 200")
    inbound(asgi_server, conversation.channel, "Hello?")
    expect(page.locator("#messages .bubble-row").filter(has_text="Hello?")).to_have_count(1, timeout=2000)
    page.wait_for_timeout(300)
    assert page.evaluate("document.getElementById('messages').scrollTop") == 200

    # The agent's own send always shows it, once.
    text = page.get_by_label("Message", exact=True)
    text.fill("Yes, here.")
    text.press("Enter")
    expect(page.locator("#messages .bubble-row").filter(has_text="Yes, here.")).to_have_count(1)
    page.wait_for_function(f"{DISTANCE_TO_BOTTOM} < 2")
    page.wait_for_timeout(500)  # the socket's copy of the same bubble has arrived by now
    expect(page.locator("#messages .bubble-row").filter(has_text="Yes, here.")).to_have_count(1)
    assert [error for error in errors if "htmx" in error] == []
    assert not page.errors


def test_older_messages_load_above_without_moving_what_the_agent_reads(new_page, long_conversation):
    conversation = long_conversation(70)  # 50 on the page, 20 older
    page = new_page()
    log_in(page, "alice")
    open_conversation(page, conversation)
    expect(bubble(page, "Message 19")).to_have_count(0)
    reading = bubble(page, "Message 20")
    top = page.evaluate("document.getElementById('messages').scrollTop = 0")
    assert top == 0
    expect(bubble(page, "Message 19")).to_have_count(1)  # the sentinel came into view: older loaded
    expect(page.locator("#messages")).to_contain_text("Start of the conversation")
    page.wait_for_timeout(300)
    # The message at the top before the load is still where it was in the viewport.
    box = page.locator("#messages").bounding_box()
    assert abs(reading.bounding_box()["y"] - box["y"]) < 60
    assert page.evaluate("document.getElementById('messages').scrollTop") > 0


@pytest.mark.parametrize("where", ["list", "conversation", "new message", "new message with contact"])
def test_frames_the_page_has_no_place_for_leave_the_console_quiet(new_page, long_conversation, asgi_server,
                                                                   whatsapp, customer, where):
    conversation = long_conversation(3)
    path = {
        "list": "/",
        "conversation": f"/conversations/{conversation.pk}/",
        "new message": f"/new/{whatsapp.pk}/",
        "new message with contact": f"/new/{whatsapp.pk}/?contact={customer.pk}",
    }[where]
    page = new_page()
    errors = console_errors(page)
    log_in(page, "alice")
    page.goto(path)
    expect(page.locator("body")).to_have_attribute("data-live", "open")

    # A message in the conversation (its bubble is new: nothing to replace), and one that starts a
    # conversation no list holds yet (its row has nowhere to be removed from).
    inbound(asgi_server, whatsapp, "Still waiting")
    inbound(asgi_server, whatsapp, "Hi, new here", sender="+60199999999")
    page.wait_for_timeout(1000)
    if where == "list":
        expect(page.locator("#conversation-list .row").first).to_contain_text("Hi, new here")
        expect(page.locator("#conversation-list .row")).to_have_count(2)
    if where in ("conversation", "new message with contact"):
        expect(page.locator("#messages .bubble-row").filter(has_text="Still waiting")).to_have_count(1)
    assert errors == []
    assert not page.errors
