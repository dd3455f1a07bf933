"""Reading raw messages: every fixture in tests/email/messages, through the kind's parser and
normalizer (no database)."""

import base64

import pytest

from apps.providers.kinds.email import EmailAdapter, html, parse, raw_event
from tests.fixtures.email import eml


def _normalized(raw: bytes):
    event = raw_event(raw)
    return event, EmailAdapter(config={}, secrets={}).normalize(event.kind, event.body)


def test_rfc2047_headers_and_every_charset_are_decoded():
    _, message = _normalized(eml("charsets"))
    assert message.sender == "jose@example.org"  # the real address, lowercased
    assert message.sender_name == "José Muñoz"
    assert message.subject == "Re: Café crème ☕ et gâteau"
    assert message.text == "Bonjour, le café est très bon. Ça coûte 5 €?"
    [attachment] = message.media
    assert attachment.filename == "заметка.txt" and attachment.content.decode("koi8-r") == "Привет из Москвы"


def test_an_unknown_charset_keeps_the_words():
    _, message = _normalized(eml("unknown_charset"))
    assert message.text == "Plain words survive an unknown charset."
    assert message.subject == "こんにちは"


def test_multipart_alternative_keeps_the_plain_text_and_the_sanitized_html():
    _, message = _normalized(eml("alternative"))
    assert message.text == "Hello, my order #1234 has not arrived yet. Can you check?\n\nDana"
    assert message.details["html"] == "<p>Hello, my order <b>#1234</b> has not arrived yet. Can you check?</p><p>Dana</p>"
    assert message.details["from"] == {"name": "Dana Scully", "address": "dana@example.com"}
    assert message.thread == "<alternative-1@example.com>" and message.replies_to == ()


def test_attachments_are_carried_with_their_bytes():
    _, message = _normalized(eml("attachments"))
    assert [(m.filename, m.content_type) for m in message.media] == [("invoice.pdf", "application/pdf"),
                                                                      ("box.png", "image/png")]
    assert message.media[0].content.startswith(b"%PDF-1.4")
    assert all(m.url == "" for m in message.media)


def test_inline_images_keep_their_content_id_and_the_html_its_cid_reference():
    _, message = _normalized(eml("inline_image"))
    [logo] = message.media
    assert logo.url == "cid:logo@example.com" and logo.content.startswith(b"\x89PNG")
    assert 'src="cid:logo@example.com"' in message.details["html"]
    shown = html.sanitize(message.details["html"], images={"logo@example.com": "/files/logo.png"})
    assert '<img src="/files/logo.png" alt="logo">' in shown
    assert "cid:" not in html.sanitize(message.details["html"], images={})  # an unknown cid is dropped


def test_a_reply_folds_the_quoted_history_and_keeps_the_full_text():
    _, message = _normalized(eml("reply_by_header", in_reply_to="<ours-1@acme.test>",
                                 references="<root@acme.test> <ours-1@acme.test>"))
    assert message.text == "Thanks, that fixed it!"
    assert "> Please try restarting the router." in message.details["full_text"]
    assert message.replies_to == ("<ours-1@acme.test>", "<root@acme.test>")  # newest first
    assert message.thread == "<root@acme.test>"


def test_a_reply_address_names_its_token():
    _, message = _normalized(eml("reply_by_address", token="42-0123456789abcdef0123"))
    assert message.reply_token == "42-0123456789abcdef0123"
    assert message.replies_to == ()


def test_a_forwarded_mail_keeps_what_was_forwarded():
    _, message = _normalized(eml("forwarded"))
    assert "The delivery was two weeks late." in message.text
    assert message.details["full_text"] == ""
    [attached] = message.media
    assert attached.content_type == "message/rfc822" and b"<original-complaint@example.net>" in attached.content


def test_an_auto_reply_is_marked():
    _, message = _normalized(eml("auto_reply"))
    assert message.automated is True and message.details["automated"] is True
    _, human = _normalized(eml("alternative"))
    assert human.automated is False


@pytest.mark.parametrize("header", ["Auto-Submitted: auto-generated", "X-Autoreply: yes", "Precedence: bulk",
                                    "Precedence: auto_reply"])
def test_each_auto_reply_header_marks_a_message(header):
    raw = f"From: a@example.com\r\nMessage-ID: <h@example.com>\r\n{header}\r\n\r\nAway.\r\n".encode()
    assert _normalized(raw)[1].automated is True


def test_auto_submitted_no_is_a_person():
    raw = b"From: a@example.com\r\nMessage-ID: <h@example.com>\r\nAuto-Submitted: no\r\n\r\nHi.\r\n"
    assert _normalized(raw)[1].automated is False


def test_a_delivery_status_report_fails_the_original_with_its_reason():
    event, update = _normalized(eml("bounce", recipient="dana@example.com", original="<ours-7@acme.test>"))
    assert event.kind == "status" and event.ref == "<ours-7@acme.test>"
    assert update.external_id == "<ours-7@acme.test>" and update.status == "failed"
    assert update.error_code == "5.1.1" and update.effect == "blocked"
    assert update.error_reason == "Failed to send via Email: the address does not exist."


def test_a_delayed_delivery_report_changes_nothing():
    raw = eml("bounce", recipient="dana@example.com", original="<ours-7@acme.test>").replace(
        b"Action: failed", b"Action: delayed").replace(b"Status: 5.1.1", b"Status: 4.4.1")
    assert _normalized(raw)[1] is None


def test_hostile_html_is_disarmed():
    _, message = _normalized(eml("hostile_html"))
    stored = message.details["html"]
    for needle in ("<script", "onload", "onerror", "hx-get", "hx-trigger", "<form", "<input", "javascript:",
                   "<iframe", "<style", "position", "url(", "css.png", "bg.png", "<svg", "alert("):
        assert needle not in stored, needle
    assert '<a href="https://example.net/ok" target="_blank" rel="noopener noreferrer nofollow">a fine link</a>' in stored
    # The stored copy keeps the remote image for when the agent asks; it is blocked when shown.
    assert message.details["remote_images"] is True
    assert "tracker.example.net" not in html.sanitize(stored)
    assert "Important invoice" in message.text


def test_remote_images_are_blocked_until_asked_for():
    source = '<p>Hi</p><img src="https://cdn.example.com/a.png"><img src="//cdn.example.com/b.png">'
    assert html.has_remote_images(source)
    blocked = html.sanitize(source)
    assert "cdn.example.com" not in blocked and blocked.count(html.BLOCKED_IMAGE) == 2
    assert 'src="https://cdn.example.com/a.png"' in html.sanitize(source, remote_images=True)


def test_a_spoofed_display_name_is_seen_as_such():
    _, message = _normalized(eml("spoofed_name"))
    assert message.sender == "attacker@evil.example"
    assert message.details["spoofed_name"] is True
    assert message.details["from"] == {"name": "ceo@acme.test", "address": "attacker@evil.example"}
    assert message.sender_name == ""  # the contact is never named after the spoof


def test_the_stored_event_keeps_the_raw_bytes():
    raw = eml("charsets")
    event = raw_event(raw)
    assert event.event_id == "<charsets-1@example.org>" and event.kind == "message"
    assert base64.b64decode(event.body["raw"]) == raw


def test_a_message_without_message_id_gets_one_from_its_bytes():
    raw = b"From: a@example.com\r\nSubject: x\r\n\r\nHi\r\n"
    assert raw_event(raw).event_id == raw_event(raw).event_id
    assert raw_event(raw).event_id.endswith("@parley.invalid>")


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"not an email at all", b"Subject: no sender\r\n\r\nHi"])
def test_what_is_not_an_email_is_refused(raw):
    with pytest.raises(ValueError):
        raw_event(raw)


def test_reply_parsing_never_loses_a_message():
    assert parse.visible_text("") == ""
    assert parse.visible_text("> only quoted\n> lines") == "> only quoted\n> lines"
