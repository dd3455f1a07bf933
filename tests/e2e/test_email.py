"""Email end to end in Chromium: a customer's HTML email arrives live through the relay endpoint,
the agent sees the real address, the HTML in a sandboxed frame with remote images blocked until
asked for, and replies: the reply goes out over SMTP threaded under the customer's email."""

import pytest
import requests
from playwright.sync_api import expect

from apps.conversations.models import Message
from tests.fixtures.browser import log_in, screenshot
from tests.fixtures.email import INBOUND_SECRET, connect_email, email_credentials

pytestmark = pytest.mark.browser


def _email(remote_image: str, message_id: str, subject: str, text: str) -> bytes:
    return (
        f"From: Dana Scully <dana@example.com>\r\nTo: support@acme.test\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        f"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f'<p id="said">{text}</p><img id="remote" src="{remote_image}" alt="banner">'
        '<script>document.body.innerHTML = "scripted"</script><p hx-get="/api/v1/contacts/">plain</p>\r\n'
        "--alt--\r\n"
    ).encode()


def relay(server, channel, raw: bytes) -> int:
    return requests.post(f"{server.url}/webhooks/email/{channel.uuid}/", data=raw, timeout=10, headers={
        "Content-Type": "message/rfc822", "Authorization": f"Bearer {INBOUND_SECRET}"}).status_code


def test_an_email_arrives_live_shows_sandboxed_and_the_agent_replies(new_page, asgi_server, alice, smtp_server,
                                                                     fake_sns):
    channel = connect_email(alice, email_credentials(smtp_server))
    remote = f"{fake_sns.base}/banner.png"
    assert relay(asgi_server, channel, _email(remote, "<first@example.com>", "Where is my parcel?",
                                              "Hello, where is my parcel?")) == 204
    first = Message.objects.get()
    page = new_page()
    log_in(page, "alice")
    page.goto(f"/conversations/{first.conversation_id}/")
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    bubble = page.locator("#messages .bubble-row").filter(has_text="Hello, where is my parcel?")
    expect(bubble.locator(".email-subject")).to_have_text("Where is my parcel?")
    expect(bubble.locator(".email-from-address")).to_have_text("<dana@example.com>")

    # A second email of the same thread arrives live.
    second = _email(remote, "<second@example.com>", "Re: Where is my parcel?", "Any news?").replace(
        b"MIME-Version", b"In-Reply-To: <first@example.com>\r\nMIME-Version")
    assert relay(asgi_server, channel, second) == 204
    latest = page.locator("#messages .bubble-row").filter(has_text="Any news?")
    expect(latest).to_be_visible()

    # The HTML: in a sandboxed frame, no script ran, no hx-* survived, the remote image blocked.
    latest.get_by_text("Show the formatted email").click()
    frame_element = latest.locator("iframe.email-frame")
    expect(frame_element).to_have_attribute("sandbox", "allow-popups allow-popups-to-escape-sandbox")
    frame = latest.frame_locator("iframe.email-frame")
    expect(frame.locator("p").first).to_have_text("Any news?")
    assert "hx-get" not in frame.locator("body").inner_html()
    assert frame.locator("img[alt=banner]").get_attribute("src").startswith("data:image/gif")
    assert fake_sns.other_requests == []
    screenshot(page, "email-sandboxed")

    # The agent asks for the remote images: only then is the image fetched.
    latest.get_by_role("link", name="Load remote images").click()
    expect(frame.locator("img[alt=banner]")).to_have_attribute("src", remote)
    page.wait_for_timeout(300)  # the image request itself; asserted on the fake below
    assert "/banner.png" in fake_sns.other_requests

    # The agent replies; it goes out over SMTP, threaded.
    text = page.get_by_label("Message", exact=True)
    text.fill("It left our warehouse today.")
    text.press("Enter")
    reply = page.locator("#messages .bubble-row.outbound").filter(has_text="It left our warehouse today.")
    expect(reply.locator("[aria-label=Sent]")).to_be_visible()
    [sent] = smtp_server.received
    mail = sent.message
    assert mail["Subject"] == "Re: Where is my parcel?" and mail["In-Reply-To"] == "<second@example.com>"
    assert sent.recipients == ["dana@example.com"]
    screenshot(page, "email-replied")
    assert not page.errors
