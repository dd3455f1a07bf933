"""Stored XSS: a corpus of markup placed everywhere customer (or provider) text lands, rendered
through every page, fragment and socket frame that shows it, must come out inert: parsed with
html.parser, no script, handler, `javascript:` URL, dangerous element or htmx attribute came from
it, and its text is still shown (escaped), so the check cannot pass by showing nothing."""

from collections import Counter

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.conversations.models import Attachment
from apps.inbox import live
from tests import factories
from tests.security.conftest import Document, executable_parts

MARKER = "__xss"  # in every payload; random tokens (CSRF) never contain an underscore pair
RAW_CORPUS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    '<a href="javascript:window.__xss=1">xss</a>',
    "javascript:window.__xss=1",
    "<svg onload=window.__xss=1>xss</svg>",
    "<svg><script>window.__xss=1</script></svg>",
    '<div hx-get="/logout/" hx-trigger="load">xss</div>',
    '<div data-hx-post="/org/switch/" data-hx-trigger="load">xss</div>',
    '<div hx-on:htmx:load="window.__xss=1" hx-on::load="window.__xss=1">xss</div>',
    '" onmouseover="window.__xss=1" x="xss',
    "' hx-get='/logout/' hx-trigger='load' x='xss",
    '<iframe src="javascript:window.__xss=1">xss</iframe>',
    '<iframe srcdoc="<script>parent.__xss=1</script>">xss</iframe>',
    '<div style="width: expression(window.__xss=1); background:url(javascript:window.__xss=1)">xss</div>',
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=1>xss",
    "\uff1cscript\uff1ewindow.__xss=1\uff1c/script\uff1e xss",
    "java\u200bscript:window.__xss=1 xss",
    '<a href="&#106;avascript:window.__xss=1">xss</a>',
    "\u2028\u2029</script><script>window.__xss=1</script>xss",
    "\u202e<script>window.__xss=1</script>xss",
    "{{ request.user }}{% csrf_token %}{{7*7}} xss",
    'https://example.com/"onmouseover="window.__xss=1"xss',
    "https://example.com/<svg/onload=window.__xss=1>xss",
    "https://example.com/?a=1&b=<img/src/onerror=window.__xss=1>xss",
    '<base href="https://evil.test/">xss',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__xss=1">xss',
    '<form action="javascript:window.__xss=1"><button>xss</button></form>',
    '<object data="javascript:window.__xss=1">xss</object>',
    "<!--<img src=x onerror=window.__xss=1>--> xss",
    "<![CDATA[<script>window.__xss=1</script>]]> xss",
]
CORPUS = [payload.replace("xss", "__xss").replace("____xss", "__xss") for payload in RAW_CORPUS]


def seed(acme, alice, whatsapp, payload: str):
    """The payload everywhere the inbox shows text from outside: contact name and email, an
    identity's address, consent reasons, the message text and preview, an attachment's file
    name, a provider's failure reason, an agent's name, the channel's name."""
    alice.first_name = payload[:150]
    alice.save(update_fields=["first_name"])
    whatsapp.name = payload[:100]
    whatsapp.save(update_fields=["name"])
    contact = factories.ContactFactory(
        organization=acme, name=payload[:200], email=payload[:254], phone="+60123450001",
        whatsapp_opt_in_source=payload[:40],
    )
    contact.identities.create(organization=acme, kind="whatsapp", address=payload[:255])
    conversation = factories.ConversationFactory(
        channel=whatsapp, contact=contact, last_message_preview=payload[:200], last_inbound_at=timezone.now()
    )
    inbound = factories.MessageFactory(conversation=conversation, text=payload)
    attachment = Attachment(organization=acme, message=inbound, content_type="application/pdf",
                            filename=payload[:255], size=3)
    attachment.file.save("file.pdf", ContentFile(b"pdf"), save=True)
    image = Attachment(organization=acme, message=inbound, content_type="image/png", filename=payload[:255], size=3)
    image.file.save("image.png", ContentFile(b"png"), save=True)
    failed = factories.MessageFactory(
        conversation=conversation, direction="outbound", status="failed", text=payload, sender=alice,
        error_reason=payload[:500], error_code="63016",
    )
    location = factories.MessageFactory(conversation=conversation, type="location", text="",
                                        location={"latitude": payload[:20], "longitude": "1", "label": payload})
    # Enough older messages for the "load older" fragment to have a page.
    older = [factories.MessageFactory(conversation=conversation, text=payload) for _ in range(3)]
    return contact, conversation, failed, location, older


def pages(client, contact, conversation, channel, failed, older, membership, payload) -> dict[str, str]:
    conversation_url = reverse("inbox:conversation", args=[conversation.pk])
    split_url = reverse("inbox:new-split", args=[channel.pk])
    htmx = {"HX-Request": "true"}
    rendered = {
        "inbox list": client.get(reverse("inbox:index")),
        "list fragment": client.get(reverse("inbox:index"), headers={**htmx, "HX-Target": "conversation-list"}),
        "list pane": client.get(reverse("inbox:index"), headers={**htmx, "HX-Target": "list-pane"}),
        "conversation": client.get(conversation_url),
        "workspace fragment": client.get(conversation_url, headers={**htmx, "HX-Target": "workspace"}),
        "older messages": client.get(reverse("inbox:messages", args=[conversation.pk]) + f"?before={older[-1].pk}"),
        "contact panel": client.get(reverse("inbox:contact", args=[contact.pk])),
        "new message": client.get(reverse("inbox:new")),
        "new-message split": client.get(split_url + f"?contact={contact.pk}"),
        "contact search": client.get(split_url, {"q": payload[:100]}),
        "contact results": client.get(split_url, {"q": contact.name[:100]}, headers={**htmx, "HX-Target": "contact-results"}),
        "thread pane": client.get(split_url, {"contact": contact.pk}, headers={**htmx, "HX-Target": "thread-pane"}),
        "retry fragment": client.post(reverse("inbox:retry", args=[failed.pk]), headers=htmx),
    }
    html = {}
    for name, response in rendered.items():
        assert response.status_code in (200, 204), (name, response.status_code)
        html[name] = response.content.decode()
    # The socket's fragments are rendered once for every viewer (every variant checked).
    socket = {
        "message created": live.message_created_fragments(conversation_id=conversation.pk, message_id=failed.pk),
        "status changed": live.message_status_fragments(conversation_id=conversation.pk, message_id=failed.pk),
        "conversation row": live.conversation_updated_fragments(conversation_id=conversation.pk),
    }
    for name, event in socket.items():
        html[f"socket: {name}"] = "".join(event["fragments"].values())
    return html


BENIGN = "plain words __xss"
_BASELINE: dict[str, Counter] = {}


def structure(html: str) -> Counter:
    """Which elements with which attribute names a page has. Customer text may change text and
    attribute values, never this (links that `linkify` makes of http URLs aside)."""
    return Counter(
        (tag, tuple(sorted(attrs)))
        for tag, attrs in Document(html).elements
        if not (tag == "a" and attrs.get("rel") == "noopener noreferrer nofollow")
    )


def render_all(client, acme, alice, whatsapp, payload) -> dict[str, str]:
    contact, conversation, failed, location, older = seed(acme, alice, whatsapp, payload)
    membership = alice.memberships.get(organization=acme)
    return pages(client, contact, conversation, whatsapp, failed, older, membership, payload)


def baseline(client, acme, alice, whatsapp) -> dict[str, Counter]:
    """The pages' structure with plain text, rendered once and rolled back."""
    if not _BASELINE:
        try:
            with transaction.atomic():
                for name, html in render_all(client, acme, alice, whatsapp, BENIGN).items():
                    _BASELINE[name] = structure(html)
                raise _Rollback
        except _Rollback:
            pass
        whatsapp.refresh_from_db()
        alice.refresh_from_db()
    return _BASELINE


class _Rollback(Exception):
    pass


@pytest.mark.parametrize("payload", CORPUS, ids=range(len(CORPUS)))
def test_customer_markup_renders_inert_everywhere(alice_client, acme, alice, whatsapp, settings, payload):
    settings.TWILIO_API_BASE = "http://127.0.0.1:9"  # the retry fragment's send goes nowhere
    expected = baseline(alice_client, acme, alice, whatsapp)
    rendered = render_all(alice_client, acme, alice, whatsapp, payload)

    shown_in = []
    for name, html in rendered.items():
        problems = executable_parts(html, marker=MARKER)
        assert problems == [], (name, problems)
        # No element or attribute (hx-get, hx-trigger, onmouseover...) came from the payload.
        assert structure(html) == expected[name], (name, structure(html) - expected[name], expected[name] - structure(html))
        if payload.strip()[:40] in Document(html).text:
            shown_in.append(name)
    # The payload is shown, as text, where customer text is shown.
    assert {"conversation", "workspace fragment", "inbox list", "contact panel", "new-message split",
            "socket: message created"} <= set(shown_in), shown_in


def test_the_checker_catches_what_it_must(settings):
    # The same corpus as raw HTML: the checker flags every executable one, so a template that
    # stopped escaping would fail the test above.
    unflagged = [payload for payload in CORPUS if not executable_parts(f"<div>{payload}</div>", marker=MARKER)]
    harmless_as_raw_html = {  # text as HTML; dangerous only inside an attribute or a template
        "javascript:window.__xss=1",
        "\uff1cscript\uff1ewindow.__xss=1\uff1c/script\uff1e __xss",
        "java\u200bscript:window.__xss=1 __xss",
        "{{ request.user }}{% csrf_token %}{{7*7}} __xss",
        "<!--<img src=x onerror=window.__xss=1>--> __xss",
        "<![CDATA[<script>window.__xss=1</script>]]> __xss",
        "https://example.com/?a=1&b=<img/src/onerror=window.__xss=1>__xss",
        "' hx-get='/logout/' hx-trigger='load' x='__xss",
        'https://example.com/"onmouseover="window.__xss=1"__xss',
        '" onmouseover="window.__xss=1" x="__xss',
    }
    # Injected htmx attributes with our own URLs are caught by the structure comparison instead.
    caught_by_structure = {payload for payload in unflagged if structure(f"<div>{payload}</div>") != structure("<div>x</div>")}
    assert set(unflagged) - caught_by_structure <= harmless_as_raw_html, unflagged
    assert executable_parts('<a href=" jav&#x09;ascript:alert(1)">x</a>')
    assert executable_parts('<p hx-get="/logout/" title="__xss">x</p>', marker=MARKER) == []  # ours, no payload
    assert executable_parts('<p hx-vals=\'{"a": "__xss"}\'>x</p>', marker=MARKER)
    # An attribute break-out, had a template put the payload unquoted or unescaped in one:
    assert executable_parts('<p title="" onmouseover="window.__xss=1" x="__xss">x</p>', marker=MARKER)
