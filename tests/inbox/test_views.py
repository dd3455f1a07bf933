"""The inbox pages and their htmx fragments: list views and filters, opening and reading a
conversation, assigning, statuses, tenancy (another organization's ids answer 404), secrets and
query counts."""

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.accounts.middleware import SESSION_KEY
from apps.conversations.models import ConversationRead
from tests import factories

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def htmx(target: str) -> dict:
    return {**HTMX, "HTTP_HX_TARGET": target}


class Elements(HTMLParser):
    """Every element as (tag, {attribute: value}) so tests can look for what must not exist."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def with_id(self, element_id: str) -> list[tuple[str, dict]]:
        return [e for e in self.elements if e[1].get("id") == element_id]


@pytest.fixture
def conversation(whatsapp, customer):
    return factories.ConversationFactory(channel=whatsapp, contact=customer, last_inbound_at=timezone.now())


def inbound(conversation, text="Hello", minutes_ago=0):
    return factories.MessageFactory(
        conversation=conversation, text=text, created_at=timezone.now() - timedelta(minutes=minutes_ago)
    )


# Sign in, sign out, switch organization ------------------------------------------------------


def test_login_page_and_sign_in(client, alice):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in page.content

    response = client.post(reverse("login"), {"username": "alice", "password": "password"})
    assert response.status_code == 302
    assert response["Location"] == reverse("inbox:index")
    assert client.get(reverse("inbox:index")).status_code == 200


def test_wrong_password_is_refused(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_inbox_requires_login(client):
    response = client.get(reverse("inbox:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_logout_is_a_post(alice_client):
    assert alice_client.get(reverse("logout")).status_code == 405
    response = alice_client.post(reverse("logout"))
    assert response.status_code == 302
    assert alice_client.get(reverse("inbox:index")).status_code == 302


def test_switch_organization(alice_client, alice, acme, globex):
    factories.MembershipFactory(user=alice, organization=globex, role="admin")
    globex_channel = factories.ChannelFactory(organization=globex, name="Globex WhatsApp")
    globex_conversation = factories.ConversationFactory(channel=globex_channel)

    page = alice_client.get(reverse("inbox:index"))
    assert b"Globex" in page.content  # the switcher lists both organizations
    assert alice_client.get(reverse("inbox:conversation", args=[globex_conversation.pk])).status_code == 404

    response = alice_client.post(reverse("organization-switch"), {"organization": globex.pk})
    assert response.status_code == 302
    assert alice_client.session[SESSION_KEY] == globex.pk
    assert alice_client.get(reverse("inbox:conversation", args=[globex_conversation.pk])).status_code == 200


def test_switch_to_an_organization_you_are_not_in_is_404(alice_client, acme, globex):
    assert alice_client.post(reverse("organization-switch"), {"organization": globex.pk}).status_code == 404
    assert alice_client.post(reverse("organization-switch"), {"organization": "x"}).status_code == 404
    assert alice_client.session[SESSION_KEY] == acme.pk


# The list ------------------------------------------------------------------------------------


@pytest.fixture
def three_conversations(acme, alice, bob, whatsapp):
    mine = factories.ConversationFactory(channel=whatsapp, assignee=alice, contact__name="Mine Person")
    unassigned = factories.ConversationFactory(channel=whatsapp, contact__name="Nobody's Person")
    bobs = factories.ConversationFactory(
        channel=whatsapp, assignee=bob, contact__name="Bob's Person", status="resolved"
    )
    return mine, unassigned, bobs


@pytest.mark.parametrize(
    "query, expected",
    [
        ("?view=mine", {"Mine Person"}),
        ("?view=unassigned", {"Nobody&#x27;s Person"}),
        ("?view=all", {"Mine Person", "Nobody&#x27;s Person", "Bob&#x27;s Person"}),
        ("", {"Mine Person", "Nobody&#x27;s Person", "Bob&#x27;s Person"}),
        ("?status=resolved", {"Bob&#x27;s Person"}),
        ("?view=all&status=open", {"Mine Person", "Nobody&#x27;s Person"}),
    ],
)
def test_list_views_and_filters(alice_client, three_conversations, query, expected):
    response = alice_client.get(reverse("inbox:index") + query, **htmx("conversation-list"))
    html = response.content.decode()
    names = {"Mine Person", "Nobody&#x27;s Person", "Bob&#x27;s Person"}
    assert {name for name in names if name in html} == expected


def test_channel_filter(alice_client, acme, whatsapp, three_conversations):
    other = factories.ChannelFactory(organization=acme, name="Second line", config={"account_sid": "AC" + "2" * 32,
                                                                                     "sender": "whatsapp:+14155550000"})
    factories.ConversationFactory(channel=other, contact__name="Second Line Person")
    html = alice_client.get(reverse("inbox:index") + f"?channel={other.pk}", **htmx("conversation-list")).content.decode()
    assert "Second Line Person" in html and "Mine Person" not in html


def test_full_page_versus_fragment(alice_client, three_conversations):
    page = alice_client.get(reverse("inbox:index")).content.decode()
    assert "<html" in page and 'id="conversation-list"' in page and 'ws-connect="/ws/inbox/"' in page
    assert 'hx-headers=\'{"x-csrftoken": "' in page

    fragment = alice_client.get(reverse("inbox:index"), **htmx("conversation-list")).content.decode()
    assert "<html" not in fragment
    tree = Elements(fragment)
    assert tree.elements[0][1]["id"] == "conversation-list"
    rows = [e for e in tree.elements if e[1].get("id", "").startswith("conversation-") and e[0] == "a"]
    assert len(rows) == 3
    assert all(attrs["href"].startswith("/conversations/") for _, attrs in rows)


def test_list_pane_fragment_points_the_socket_at_the_new_filters(alice_client, three_conversations):
    html = alice_client.get(reverse("inbox:index") + "?view=mine", **htmx("list-pane")).content.decode()
    live = Elements(html).with_id("live")
    assert live and live[0][1]["ws-connect"] == "/ws/inbox/?view=mine"
    assert live[0][1]["hx-swap-oob"] == "outerHTML"


def test_list_paginates_with_load_more(alice_client, whatsapp):
    now = timezone.now()
    for n in range(53):
        factories.ConversationFactory(
            channel=whatsapp, contact__name=f"Person {n:02d}", last_message_at=now - timedelta(minutes=n)
        )
    first = alice_client.get(reverse("inbox:index"), **htmx("conversation-list")).content.decode()
    assert "Person 00" in first and "Person 49" in first and "Person 50" not in first
    more = Elements(first).with_id("list-more")[0][1]["hx-get"]
    second = alice_client.get(more, **htmx("list-more")).content.decode()
    assert "Person 50" in second and "Person 52" in second and "Person 49" not in second
    assert not Elements(second).with_id("list-more")


def test_unread_badge_and_open_marks_read(alice_client, alice, conversation):
    inbound(conversation, "Are you there?")
    row = alice_client.get(reverse("inbox:index"), **htmx("conversation-list")).content.decode()
    assert 'class="badge"' in row and "row unread" in row

    page = alice_client.get(reverse("inbox:conversation", args=[conversation.pk]))
    assert page.status_code == 200
    assert ConversationRead.objects.filter(conversation=conversation, user=alice).exists()
    row = alice_client.get(reverse("inbox:index"), **htmx("conversation-list")).content.decode()
    assert 'class="badge"' not in row and "row unread" not in row


def test_open_with_htmx_renders_the_workspace_and_refreshes_the_row(alice_client, conversation):
    inbound(conversation, "Unread one")
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk]), **htmx("workspace")).content.decode()
    assert "<html" not in html
    tree = Elements(html)
    assert tree.elements[0][1]["id"] == "workspace"
    for element_id in ("messages", "window-banner", "contact-panel", "composer", "conversation-header"):
        assert tree.with_id(element_id), element_id
    assert tree.with_id("messages")[0][1]["data-conversation-id"] == str(conversation.pk)
    live = tree.with_id("live")[0][1]
    assert live["ws-connect"] == f"/ws/inbox/?conversation={conversation.pk}"
    row = tree.with_id(f"conversation-{conversation.pk}")[0][1]
    assert row["hx-swap-oob"] == "outerHTML" and "unread" not in row["class"]


def test_conversation_page_shows_the_contact_and_window(alice_client, conversation, customer):
    customer.email = "siti@example.com"
    customer.save()
    inbound(conversation, "Hi", minutes_ago=5)
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert "Siti Rahman" in html and "+60123456789" in html and "siti@example.com" in html
    assert "Opted in" in html
    assert "Window open: 23 h" in html
    tree = Elements(html)
    assert "is-open" in tree.with_id("window-banner")[0][1]["class"]


def test_closed_window_shows_the_warning(alice_client, conversation):
    conversation.last_inbound_at = timezone.now() - timedelta(hours=25)
    conversation.save()
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert (
        "This contact hasn&#x27;t messaged you for more than 24 hours; WhatsApp may require a template message." in html
    )


def test_unsubscribed_contact_panel(alice_client, conversation, customer):
    customer.consents.filter(kind="whatsapp").update(
        opted_in=False, opted_out_at=timezone.now(), opt_out_reason="Replied STOP"
    )
    html = alice_client.get(reverse("inbox:contact", args=[customer.pk])).content.decode()
    assert "Unsubscribed" in html and "Replied STOP" in html


def test_bubbles_labels_and_order(alice_client, alice, bob, conversation):
    inbound(conversation, "first from customer", minutes_ago=10)
    factories.MessageFactory(conversation=conversation, direction="outbound", sender=alice, text="mine",
                             created_at=timezone.now() - timedelta(minutes=9))
    factories.MessageFactory(conversation=conversation, direction="outbound", sender=bob, text="bobs",
                             created_at=timezone.now() - timedelta(minutes=8))
    factories.MessageFactory(conversation=conversation, direction="outbound", sender=None, sender_kind="bot",
                             text="automatic", created_at=timezone.now() - timedelta(minutes=7))
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    thread = html[html.index('id="messages"'):]
    assert thread.index("first from customer") < thread.index("mine") < thread.index("bobs") < thread.index("automatic")
    assert '<div class="bubble-sender">Siti Rahman</div>' in thread
    assert '<div class="bubble-sender">You</div>' in thread
    assert '<div class="bubble-sender">bob</div>' in thread
    assert '<div class="bubble-sender">Bot</div>' in thread


def test_delivery_states(alice_client, alice, conversation):
    states = {}
    for status in ("pending", "sent", "delivered", "read", "failed", "unknown"):
        states[status] = factories.MessageFactory(
            conversation=conversation, direction="outbound", sender=alice, status=status,
            error_reason="the contact's phone number is not valid." if status == "failed" else "",
        )
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    tree = Elements(html)
    for status, message in states.items():
        element = tree.with_id(f"message-{message.pk}-status")
        assert element and f"status-{status}" in element[0][1]["class"]
    assert 'title="Sending…"' in html
    assert 'class="tick tick-read"' in html
    assert "Failed" in html and "the contact&#x27;s phone number is not valid." in html and "Not confirmed" in html
    retries = [attrs["hx-post"] for tag, attrs in tree.elements if tag == "button" and "hx-post" in attrs
               and "/retry/" in attrs["hx-post"]]
    assert sorted(retries) == sorted(
        reverse("inbox:retry", args=[states[s].pk]) for s in ("failed", "unknown")
    )


def test_times_in_the_agents_time_zone(alice_client, conversation):
    message = inbound(conversation, "timed")
    message.created_at = datetime(2026, 1, 15, 1, 30, tzinfo=UTC)
    message.save()
    alice_client.cookies["tz"] = "Asia/Kuala_Lumpur"
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert ">09:30</time>" in html and "(+08)" in html
    alice_client.cookies["tz"] = "Asia%2FKuala_Lumpur"  # how browsers' encodeURIComponent writes it
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert ">09:30</time>" in html
    alice_client.cookies["tz"] = "../../etc/passwd"
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert ">01:30</time>" in html


def test_the_thread_is_not_mistaken_for_notifications(alice_client, conversation):
    inbound(conversation, "a customer message")
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert "a customer message" in html
    assert 'class="toast toast-' not in html


def test_older_messages_page(alice_client, conversation):
    start = timezone.now() - timedelta(hours=2)
    messages = [
        factories.MessageFactory(conversation=conversation, text=f"msg-{n:03d}", created_at=start + timedelta(seconds=n))
        for n in range(60)
    ]
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    assert "msg-010" in html and "msg-059" in html and "msg-009<" not in html
    sentinel = Elements(html).with_id("older-messages")[0][1]
    assert sentinel["hx-trigger"] == "intersect once"
    assert sentinel["hx-get"].endswith(f"?before={messages[10].pk}")

    older = alice_client.get(sentinel["hx-get"], **htmx("older-messages")).content.decode()
    assert "msg-000" in older and "msg-009" in older and "msg-010" not in older
    assert not Elements(older).with_id("older-messages")
    assert "Start of the conversation" in older


# Assign and status ---------------------------------------------------------------------------


def test_assign_to_me_and_to_another_agent(alice_client, alice, bob, conversation):
    url = reverse("inbox:assign", args=[conversation.pk])
    response = alice_client.post(url, {"assignee": "me"}, **htmx("conversation-header"))
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.assignee == alice
    tree = Elements(response.content.decode())
    assert tree.elements[0][1]["id"] == "conversation-header"
    assert tree.with_id(f"conversation-{conversation.pk}")[0][1]["hx-swap-oob"] == "outerHTML"

    alice_client.post(url, {"assignee": str(bob.pk)}, **htmx("conversation-header"))
    conversation.refresh_from_db()
    assert conversation.assignee == bob

    alice_client.post(url, {"assignee": ""}, **htmx("conversation-header"))
    conversation.refresh_from_db()
    assert conversation.assignee is None


def test_assign_to_someone_outside_the_organization_is_404(alice_client, charlie, conversation):
    url = reverse("inbox:assign", args=[conversation.pk])
    assert alice_client.post(url, {"assignee": str(charlie.pk)}).status_code == 404
    conversation.refresh_from_db()
    assert conversation.assignee is None


def test_change_status(alice_client, conversation):
    url = reverse("inbox:status", args=[conversation.pk])
    response = alice_client.post(url, {"status": "resolved"}, **htmx("conversation-header"))
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.status == "resolved"
    # Without htmx: back to the conversation page.
    response = alice_client.post(url, {"status": "pending"})
    assert response.status_code == 302 and response["Location"] == reverse("inbox:conversation", args=[conversation.pk])
    conversation.refresh_from_db()
    assert conversation.status == "pending"


def test_invalid_status_is_refused_with_its_sentence(alice_client, conversation):
    response = alice_client.post(reverse("inbox:status", args=[conversation.pk]), {"status": "bogus"},
                                 **htmx("conversation-header"))
    assert response.status_code == 422
    assert "Choose open, pending, snoozed or resolved." in response["HX-Trigger"]
    conversation.refresh_from_db()
    assert conversation.status == "open"


# Tenancy and secrets -------------------------------------------------------------------------


def test_another_organizations_ids_answer_404(charlie_client, conversation, customer, whatsapp, alice):
    message = factories.MessageFactory(conversation=conversation, direction="outbound", status="failed", sender=alice)
    urls_get = [
        reverse("inbox:conversation", args=[conversation.pk]),
        reverse("inbox:messages", args=[conversation.pk]) + f"?before={message.pk}",
        reverse("inbox:new-split", args=[whatsapp.pk]),
        reverse("inbox:new-split", args=[whatsapp.pk]) + f"?contact={customer.pk}",
        reverse("inbox:contact", args=[customer.pk]),
    ]
    for url in urls_get:
        assert charlie_client.get(url).status_code == 404, url
    urls_post = [
        (reverse("inbox:send", args=[conversation.pk]), {"text": "hi"}),
        (reverse("inbox:assign", args=[conversation.pk]), {"assignee": "me"}),
        (reverse("inbox:status", args=[conversation.pk]), {"status": "resolved"}),
        (reverse("inbox:retry", args=[message.pk]), {}),
        (reverse("inbox:new-send", args=[whatsapp.pk]), {"contact": customer.pk, "text": "hi"}),
        (reverse("inbox:attachment-create"), {"channel": whatsapp.pk}),
    ]
    for url, data in urls_post:
        assert charlie_client.post(url, data).status_code == 404, url
    conversation.refresh_from_db()
    assert conversation.assignee is None and conversation.status == "open"
    assert conversation.messages.count() == 1


def test_globex_split_page_does_not_list_acme_contacts(charlie_client, globex, customer):
    globex_channel = factories.ChannelFactory(organization=globex, name="Globex WA")
    html = charlie_client.get(reverse("inbox:new-split", args=[globex_channel.pk])).content.decode()
    assert "Siti Rahman" not in html
    assert "No contacts with WhatsApp opt-in found." in html


def test_acme_contact_on_globex_split_page_is_404(charlie_client, globex, customer):
    globex_channel = factories.ChannelFactory(organization=globex, name="Globex WA")
    url = reverse("inbox:new-split", args=[globex_channel.pk]) + f"?contact={customer.pk}"
    assert charlie_client.get(url).status_code == 404


def test_attachment_url_of_another_organization_is_404(alice_client, charlie_client, conversation, settings):
    from django.core.files.base import ContentFile

    from apps.conversations.attachments import attachment_url
    from apps.conversations.models import Attachment

    message = inbound(conversation, "")
    attachment = Attachment(organization=conversation.organization, message=message, content_type="image/png",
                            filename="photo.png", size=3)
    attachment.file.save("photo.png", ContentFile(b"png"), save=True)
    html = alice_client.get(reverse("inbox:conversation", args=[conversation.pk])).content.decode()
    url = attachment_url(attachment)
    assert f'src="{url}"' in html and 'loading="lazy"' in html
    assert alice_client.get(url).status_code == 200
    assert charlie_client.get(url).status_code == 404


def test_no_channel_secret_in_any_page(alice_client, conversation, whatsapp, customer):
    inbound(conversation, "hello")
    pages = [
        reverse("inbox:index"),
        reverse("inbox:conversation", args=[conversation.pk]),
        reverse("inbox:new"),
        reverse("inbox:new-split", args=[whatsapp.pk]) + f"?contact={customer.pk}",
        reverse("inbox:contact", args=[customer.pk]),
    ]
    for url in pages:
        html = alice_client.get(url).content.decode()
        assert factories.TEST_AUTH_TOKEN not in html, url
        assert "auth_token" not in html, url


# Query counts --------------------------------------------------------------------------------


def _queries(django_assert_num_queries, client, url, **extra):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url, **extra)  # the first request of a session also saves the chosen organization
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, **extra).status_code == 200
    return len(captured)


@pytest.mark.parametrize("client_name", ["alice_client", "bob_client"])
def test_list_query_count_is_fixed(request, client_name, acme, whatsapp, bob, django_assert_num_queries):
    from guardian.shortcuts import assign_perm

    assign_perm("providers.view_channel", bob, whatsapp)
    client = request.getfixturevalue(client_name)
    for _ in range(3):
        inbound(factories.ConversationFactory(channel=whatsapp))
    few = _queries(django_assert_num_queries, client, reverse("inbox:index"))
    for _ in range(27):
        inbound(factories.ConversationFactory(channel=whatsapp))
    with django_assert_num_queries(few):
        client.get(reverse("inbox:index"))


def test_conversation_query_count_is_fixed(alice_client, alice, conversation, django_assert_num_queries):
    from django.core.files.base import ContentFile

    from apps.conversations.models import Attachment

    def add_messages(n):
        for i in range(n):
            message = factories.MessageFactory(conversation=conversation, direction="outbound" if i % 2 else "inbound",
                                               sender=alice if i % 2 else None)
            attachment = Attachment(organization=conversation.organization, message=message, content_type="image/png",
                                    filename=f"p{i}.png", size=3)
            attachment.file.save(f"p{i}.png", ContentFile(b"png"), save=True)

    add_messages(3)
    url = reverse("inbox:conversation", args=[conversation.pk])
    few = _queries(django_assert_num_queries, alice_client, url)
    add_messages(27)
    with django_assert_num_queries(few):
        alice_client.get(url)
    fragment = _queries(django_assert_num_queries, alice_client, url, **htmx("workspace"))
    add_messages(5)
    with django_assert_num_queries(fragment):
        alice_client.get(url, **htmx("workspace"))

