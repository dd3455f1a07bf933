"""Sending from the pages: the "New message" channel choice, the WhatsApp split page, the
composer (send, refusals, retry, uploads) against the fake Twilio server, and customer content
that must stay inert."""

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from apps.conversations.models import Attachment, Message
from tests import factories
from tests.fakes import twilio as fake
from tests.inbox.test_views import Elements, htmx

pytestmark = pytest.mark.django_db

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def conversation(whatsapp, customer):
    """Siti wrote an hour ago: the 24-hour window is open."""
    conversation = factories.ConversationFactory(
        channel=whatsapp, contact=customer, last_inbound_at=timezone.now() - timedelta(hours=1)
    )
    factories.MessageFactory(conversation=conversation, text="Where is my order?",
                             created_at=timezone.now() - timedelta(hours=1))
    return conversation


def toast(response) -> str:
    return json.loads(response["HX-Trigger"])["toast"]["message"]


# New message: channel choice -----------------------------------------------------------------


def test_channel_choice_lists_whatsapp_email_and_telegram(alice_client, whatsapp):
    html = alice_client.get(reverse("inbox:new")).content.decode()
    assert f'href="{reverse("inbox:new-split", args=[whatsapp.pk])}"' in html
    assert "Email is not configured for this organization." in html
    assert "Telegram is not configured for this organization." in html
    assert "WhatsApp is not configured for this organization." not in html


def test_channel_choice_without_whatsapp(alice_client, acme):
    html = alice_client.get(reverse("inbox:new")).content.decode()
    assert "WhatsApp is not configured for this organization." in html
    assert "/new/" not in html.split("channel-choice", 1)[1]  # nothing to click


def test_unconfigured_whatsapp_channel_is_disabled(alice_client, acme):
    channel = factories.ChannelFactory(organization=acme, secrets={})  # no auth token
    html = alice_client.get(reverse("inbox:new")).content.decode()
    assert "WhatsApp is not configured for this organization." in html
    assert f'href="{reverse("inbox:new-split", args=[channel.pk])}"' not in html
    assert factories.TEST_AUTH_TOKEN not in html


def test_disabled_channel_is_not_offered(alice_client, acme):
    factories.ChannelFactory(organization=acme, status="disabled")
    html = alice_client.get(reverse("inbox:new")).content.decode()
    assert "WhatsApp is not configured for this organization." in html


# Split page: contact selector ----------------------------------------------------------------


@pytest.fixture
def contacts(acme, globex):
    return {
        "eligible": factories.ContactFactory(organization=acme, name="Aminah Yusof", phone="+60121112222",
                                             email="aminah@shop.test"),
        "other": factories.ContactFactory(organization=acme, name="Brian Lee", phone="+60133334444",
                                          email="brian@corp.test"),
        "not_opted_in": factories.ContactFactory(organization=acme, name="Carol Opt", whatsapp_opt_in=False),
        "no_phone": factories.ContactFactory(organization=acme, name="Dina Nophone", phone=""),
        "unsubscribed": factories.ContactFactory(organization=acme, name="Evan Stop", whatsapp_opt_in=False,
                                                 whatsapp_unsubscribed_at=timezone.now()),
        "blocked": factories.ContactFactory(organization=acme, name="Fay Block", whatsapp_blocked_at=timezone.now()),
        "globex": factories.ContactFactory(organization=globex, name="Gus Globex"),
    }


def test_split_page_lists_only_eligible_contacts_of_this_organization(alice_client, whatsapp, contacts):
    html = alice_client.get(reverse("inbox:new-split", args=[whatsapp.pk])).content.decode()
    assert "Aminah Yusof" in html and "Brian Lee" in html
    for name in ("Carol Opt", "Dina Nophone", "Evan Stop", "Fay Block", "Gus Globex"):
        assert name not in html, name
    assert 'id="contact-results"' in html and 'id="thread-pane"' in html


@pytest.mark.parametrize("query", ["aminah", "shop.test", "1112222", "+60 12-111 2222"])
def test_split_page_search_by_name_email_phone(alice_client, whatsapp, contacts, query):
    response = alice_client.get(reverse("inbox:new-split", args=[whatsapp.pk]), {"q": query},
                                **htmx("contact-results"))
    html = response.content.decode()
    assert Elements(html).elements[0][1]["id"] == "contact-results"
    assert "Aminah Yusof" in html and "Brian Lee" not in html


def test_split_page_search_without_match(alice_client, whatsapp, contacts):
    html = alice_client.get(reverse("inbox:new-split", args=[whatsapp.pk]), {"q": "zzz"},
                            **htmx("contact-results")).content.decode()
    assert "No contacts match “zzz”." in html


def test_split_page_without_eligible_contacts(alice_client, whatsapp, acme):
    factories.ContactFactory(organization=acme, name="Not Opted", whatsapp_opt_in=False)
    html = alice_client.get(reverse("inbox:new-split", args=[whatsapp.pk])).content.decode()
    assert "No contacts with WhatsApp opt-in found." in html


def test_selecting_a_contact_shows_their_conversation(alice_client, whatsapp, customer, conversation):
    url = reverse("inbox:new-split", args=[whatsapp.pk]) + f"?contact={customer.pk}"
    full = alice_client.get(url).content.decode()
    assert "Where is my order?" in full
    tree = Elements(full)
    assert tree.with_id("messages")[0][1]["data-conversation-id"] == str(conversation.pk)
    assert tree.with_id("live")[0][1]["ws-connect"] == f"/ws/inbox/?conversation={conversation.pk}"
    composer = tree.with_id("composer")[0][1]
    assert composer["hx-post"] == reverse("inbox:new-send", args=[whatsapp.pk])

    fragment = alice_client.get(url, **htmx("thread-pane")).content.decode()
    tree = Elements(fragment)
    assert tree.elements[0][1]["id"] == "thread-pane"
    assert tree.with_id("live")[0][1]["hx-swap-oob"] == "outerHTML"


def test_contact_without_conversation_gets_an_empty_thread_and_the_window_warning(alice_client, whatsapp, contacts):
    url = reverse("inbox:new-split", args=[whatsapp.pk]) + f"?contact={contacts['eligible'].pk}"
    html = alice_client.get(url).content.decode()
    assert "No messages yet" in html
    assert "WhatsApp may require a template message." in html
    assert Elements(html).with_id("messages")[0][1]["data-conversation-id"] == ""


def test_split_page_of_an_unconfigured_channel_disables_the_composer(alice_client, acme, customer):
    channel = factories.ChannelFactory(organization=acme, secrets={})
    html = alice_client.get(reverse("inbox:new-split", args=[channel.pk]) + f"?contact={customer.pk}").content.decode()
    assert "WhatsApp is not configured for this organization." in html
    assert [attrs for tag, attrs in Elements(html).elements if tag == "textarea"][0].keys() >= {"disabled"}


# Sending -------------------------------------------------------------------------------------


def test_send_shows_the_pending_bubble_then_it_is_sent(
    alice_client, alice, conversation, fake_twilio, django_capture_on_commit_callbacks
):
    url = reverse("inbox:send", args=[conversation.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(url, {"text": "Your parcel ships today.\nThanks!", "client_token": "tok-1"},
                                     **htmx("messages"))
    assert response.status_code == 200
    html = response.content.decode()
    message = Message.objects.get(client_token="tok-1")
    tree = Elements(html)
    assert tree.elements[0][1]["id"] == f"message-{message.pk}"
    assert "status-pending" in tree.with_id(f"message-{message.pk}-status")[0][1]["class"]
    assert "Your parcel ships today.<br>Thanks!" in html and '<div class="bubble-sender">You</div>' in html
    # A fresh composer replaces the old one (out of band), with a new token.
    composer = [attrs for tag, attrs in tree.elements if attrs.get("id") == "composer"][0]
    assert composer["hx-swap-oob"] == "outerHTML"
    assert 'name="client_token" value="tok-1"' not in html

    message.refresh_from_db()
    assert message.status == "sent" and message.external_id.startswith("SM")
    assert fake_twilio.sent[0]["body"] == "Your parcel ships today.\nThanks!"
    assert fake_twilio.sent[0]["to"] == "whatsapp:+60123456789"


def test_the_same_client_token_sends_once(alice_client, conversation, fake_twilio, django_capture_on_commit_callbacks):
    url = reverse("inbox:send", args=[conversation.pk])
    with django_capture_on_commit_callbacks(execute=True):
        first = alice_client.post(url, {"text": "once", "client_token": "double-click"}, **htmx("messages"))
        second = alice_client.post(url, {"text": "once", "client_token": "double-click"}, **htmx("messages"))
    assert first.status_code == second.status_code == 200
    assert Message.objects.filter(client_token="double-click").count() == 1
    assert len(fake_twilio.sent) == 1


def test_send_without_htmx_redirects_to_the_conversation(alice_client, conversation, fake_twilio):
    response = alice_client.post(reverse("inbox:send", args=[conversation.pk]), {"text": "plain form"})
    assert response.status_code == 302
    assert response["Location"] == reverse("inbox:conversation", args=[conversation.pk])


def test_send_from_the_split_page(alice_client, whatsapp, customer, conversation, fake_twilio,
                                  django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            reverse("inbox:new-send", args=[whatsapp.pk]),
            {"contact": customer.pk, "text": "Hello from the split page", "client_token": "split-1"},
            **htmx("messages"),
        )
    assert response.status_code == 200
    message = Message.objects.get(client_token="split-1")
    assert message.conversation_id == conversation.pk
    message.refresh_from_db()
    assert message.status == "sent"


def test_send_with_an_attachment(alice_client, conversation, whatsapp, fake_twilio, django_capture_on_commit_callbacks):
    upload = alice_client.post(
        reverse("inbox:attachment-create"),
        {"channel": whatsapp.pk, "file": SimpleUploadedFile("receipt.png", PNG, content_type="image/png")},
    )
    assert upload.status_code == 200
    attachment = Attachment.objects.get()
    chip = upload.content.decode()
    assert 'name="attachment_ids" value="%d"' % attachment.pk in chip
    assert "receipt.png" in chip and "data-chip-remove" in chip and f"{len(PNG)}" in chip

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            reverse("inbox:send", args=[conversation.pk]),
            {"text": "", "attachment_ids": [attachment.pk], "client_token": "with-file"},
            **htmx("messages"),
        )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="attachment-image"' in html and 'alt="receipt.png"' in html
    message = Message.objects.get(client_token="with-file")
    message.refresh_from_db()
    assert message.status == "sent" and message.type == "image"
    assert fake_twilio.sent[0]["num_media"] == "1"


def test_upload_of_a_refused_type(alice_client, whatsapp):
    response = alice_client.post(
        reverse("inbox:attachment-create"),
        {"channel": whatsapp.pk, "file": SimpleUploadedFile("page.html", b"<script>x</script>", content_type="text/html")},
    )
    assert response.status_code == 422
    assert "WhatsApp does not accept page.html (text/html)." in toast(response)
    assert "data-chip-error" in response.content.decode()
    assert not Attachment.objects.exists()


def test_upload_of_a_disguised_type(alice_client, whatsapp):
    response = alice_client.post(
        reverse("inbox:attachment-create"),
        {"channel": whatsapp.pk, "file": SimpleUploadedFile("invoice.html", b"<b>x</b>", content_type="image/png")},
    )
    assert response.status_code == 422
    assert not Attachment.objects.exists()


def test_upload_without_a_file(alice_client, whatsapp):
    response = alice_client.post(reverse("inbox:attachment-create"), {"channel": whatsapp.pk})
    assert response.status_code == 422
    assert toast(response) == "Choose a file to upload."


# Refusals: the exact sentence, and nothing the agent typed is lost ----------------------------


def refused(response, sentence: str, text: str):
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#composer" and response["HX-Reswap"] == "outerHTML"
    assert toast(response) == sentence
    html = response.content.decode()
    tree = Elements(html)
    assert tree.elements[0][1]["id"] == "composer"
    error = html[html.index('class="composer-error"'):]
    assert sentence.replace("'", "&#x27;") in error.split("</div>")[0]
    textarea = html[html.index("<textarea"):html.index("</textarea>")]
    assert textarea.endswith(">" + text)
    return html


def test_refusal_no_content(alice_client, conversation, fake_twilio):
    response = alice_client.post(reverse("inbox:send", args=[conversation.pk]), {"text": "   "}, **htmx("messages"))
    refused(response, "No content to send", "   ")
    assert not fake_twilio.sent


def test_refusal_contact_without_valid_phone(alice_client, whatsapp, acme, fake_twilio):
    contact = factories.ContactFactory(organization=acme, name="No Phone", phone="")
    response = alice_client.post(
        reverse("inbox:new-send", args=[whatsapp.pk]), {"contact": contact.pk, "text": "Keep me"}, **htmx("messages")
    )
    refused(response, "Contact has no valid phone", "Keep me")


def test_refusal_whatsapp_not_configured(alice_client, acme, customer, fake_twilio):
    channel = factories.ChannelFactory(organization=acme, secrets={})
    conversation = factories.ConversationFactory(channel=channel, contact=customer, last_inbound_at=timezone.now())
    response = alice_client.post(
        reverse("inbox:send", args=[conversation.pk]), {"text": "Still here\nsecond line"}, **htmx("messages")
    )
    refused(response, "WhatsApp is not configured for this organization.", "Still here\nsecond line")


def test_refusal_outside_the_window(alice_client, conversation, fake_twilio):
    conversation.last_inbound_at = timezone.now() - timedelta(hours=30)
    conversation.save()
    response = alice_client.post(reverse("inbox:send", args=[conversation.pk]), {"text": "late"}, **htmx("messages"))
    refused(
        response,
        "This contact hasn't messaged you for more than 24 hours; WhatsApp may require a template message.",
        "late",
    )


def test_refusal_keeps_the_attachment_chips(alice_client, conversation, whatsapp, fake_twilio):
    alice_client.post(
        reverse("inbox:attachment-create"),
        {"channel": whatsapp.pk, "file": SimpleUploadedFile("photo.png", PNG, content_type="image/png")},
    )
    attachment = Attachment.objects.get()
    conversation.last_inbound_at = None
    conversation.save()
    response = alice_client.post(
        reverse("inbox:send", args=[conversation.pk]),
        {"text": "with a photo", "attachment_ids": [attachment.pk], "client_token": "kept"},
        **htmx("messages"),
    )
    html = refused(response, "This contact hasn't messaged you for more than 24 hours; WhatsApp may require a "
                             "template message.", "with a photo")
    assert 'name="attachment_ids" value="%d"' % attachment.pk in html and "photo.png" in html
    assert 'name="client_token" value="kept"' in html


@pytest.mark.django_db(transaction=True)
def test_provider_failure_shows_failed_with_its_reason_and_retry(alice_client, whatsapp, customer, fake_twilio):
    """In the embedded default the worker is eager: the failure is known by the time we answer."""
    conversation = factories.ConversationFactory(channel=whatsapp, contact=customer, last_inbound_at=timezone.now())
    fake_twilio.script(fake.invalid_to("whatsapp:+60123456789"))
    response = alice_client.post(reverse("inbox:send", args=[conversation.pk]), {"text": "will fail"},
                                 **htmx("messages"))
    assert response.status_code == 200
    sentence = "Failed to send via WhatsApp: the contact's phone number is not valid."
    assert toast(response) == sentence
    message = Message.objects.get(text="will fail")
    assert message.status == "failed"
    html = response.content.decode()
    assert "Failed" in html and sentence.replace("'", "&#x27;") in html
    retry = reverse("inbox:retry", args=[message.pk])
    assert f'hx-post="{retry}"' in html

    # Retry: this time Twilio accepts it.
    response = alice_client.post(retry, **htmx(f"message-{message.pk}"))
    assert response.status_code == 200
    assert Elements(response.content.decode()).elements[0][1]["id"] == f"message-{message.pk}"
    message.refresh_from_db()
    assert message.status == "sent"
    assert len(fake_twilio.sent) == 1


def test_retry_of_a_sent_message_is_refused(alice_client, alice, conversation):
    message = factories.MessageFactory(conversation=conversation, direction="outbound", sender=alice, status="sent")
    response = alice_client.post(reverse("inbox:retry", args=[message.pk]), **htmx(f"message-{message.pk}"))
    assert response.status_code == 204
    assert toast(response) == "Only failed or unconfirmed messages can be sent again."


# Customer content stays inert ----------------------------------------------------------------

PAYLOADS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert('x')</script>",
    '<a href="javascript:alert(1)">click</a>',
    "javascript:alert(1)",
    '<div hx-get="/logout/" hx-trigger="load">owned</div>',
    '" hx-post="/org/switch/" x="',
    "<svg onload=alert(1)>",
]


def assert_inert(html: str):
    # Our own scripts come from our static files; no inline script exists at all.
    assert "<script>" not in html and "<script " not in html.replace('<script src="/static/', "")
    for tag, attrs in Elements(html).elements:
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/"), attrs
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, attrs)
            if name in ("href", "src", "action", "formaction", "xlink:href", "poster"):
                assert "javascript:" not in (value or "").lower(), (tag, attrs)
            if name.startswith(("hx-", "data-hx-")):
                assert "/logout/" not in (value or "") and "/org/switch/" not in (value or ""), (tag, attrs)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_customer_text_and_name_render_as_text(alice_client, acme, whatsapp, payload):
    contact = factories.ContactFactory(organization=acme, name=payload)
    conversation = factories.ConversationFactory(channel=whatsapp, contact=contact, last_message_preview=payload)
    factories.MessageFactory(conversation=conversation, text=payload)
    pages = [
        alice_client.get(reverse("inbox:index")).content.decode(),
        alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode(),
        alice_client.get(reverse("inbox:contact", args=[contact.pk])).content.decode(),
        alice_client.get(reverse("inbox:new-split", args=[whatsapp.pk]) + f"?contact={contact.pk}").content.decode(),
    ]
    for html in pages:
        assert_inert(html)
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[1] or payload != PAYLOADS[0]


def test_links_are_clickable_and_safe(alice_client, conversation):
    factories.MessageFactory(
        conversation=conversation,
        text='Track it: https://track.example.com/a?b=1&c="x" (or http://x.test/p_(1)). Not javascript:alert(1) nor ftp://x',
    )
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    links = [attrs for tag, attrs in Elements(html[html.index('id="messages"'):]).elements if tag == "a"
             and attrs.get("rel") == "noopener noreferrer nofollow"]
    assert [link["href"] for link in links] == ["https://track.example.com/a?b=1&c=", "http://x.test/p_(1)"]
    assert all(link["target"] == "_blank" for link in links)
    assert_inert(html)


def test_customer_content_sits_inside_hx_disable(alice_client, conversation):
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    bubble = html[html.index('class="bubble-body"') - 5:]
    assert bubble.startswith('<div class="bubble-body" hx-disable>')
