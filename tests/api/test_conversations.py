from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.conversations.models import Conversation
from tests import factories
from tests.api.conftest import body

LIST = "/api/v1/conversations/"


def make_conversations(channel, count: int, *, start=None) -> list[Conversation]:
    """`count` conversations, one minute apart, newest last in the returned list."""
    start = start or timezone.now() - timedelta(days=1)
    conversations = []
    for n in range(count):
        at = start + timedelta(minutes=n)
        contact = factories.ContactFactory(organization=channel.organization)
        conversations.append(
            factories.ConversationFactory(
                channel=channel, contact=contact, last_message_at=at, last_inbound_at=at, last_message_preview=f"m{n}"
            )
        )
    return conversations


def test_list_is_newest_first_with_cursor_pages_both_ways(alice_client, whatsapp):
    conversations = make_conversations(whatsapp, 7)
    expected = [c.pk for c in reversed(conversations)]

    first = body(alice_client.get(LIST, {"limit": 3}))
    assert [row["id"] for row in first["results"]] == expected[:3]
    assert first["previous"] is None and first["next"].startswith("http://testserver/api/v1/conversations/?")

    second = body(alice_client.get(first["next"]))
    assert [row["id"] for row in second["results"]] == expected[3:6]
    third = body(alice_client.get(second["next"]))
    assert [row["id"] for row in third["results"]] == expected[6:]
    assert third["next"] is None

    back = body(alice_client.get(third["previous"]))
    assert [row["id"] for row in back["results"]] == expected[3:6]
    assert [row["id"] for row in body(alice_client.get(back["previous"]))["results"]] == expected[:3]


def test_a_new_message_does_not_repeat_rows_on_the_next_page(alice_client, whatsapp):
    conversations = make_conversations(whatsapp, 4)
    first = body(alice_client.get(LIST, {"limit": 2}))
    # The oldest conversation gets a new message and jumps to the top: keyset pages stay stable.
    Conversation.objects.filter(pk=conversations[0].pk).update(last_message_at=timezone.now())
    second = body(alice_client.get(first["next"]))
    assert [row["id"] for row in second["results"]] == [conversations[1].pk]


def test_conversations_without_messages_come_last_and_still_page(alice_client, whatsapp):
    dated = make_conversations(whatsapp, 2)
    undated = [factories.ConversationFactory(channel=whatsapp, last_message_at=None) for _ in range(3)]
    seen = []
    url = LIST + "?limit=2"
    while url:
        page = body(alice_client.get(url))
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert seen == [dated[1].pk, dated[0].pk] + sorted((c.pk for c in undated), reverse=True)


def test_row_shape(alice_client, conversation, alice):
    Conversation.objects.filter(pk=conversation.pk).update(assignee=alice)
    row = body(alice_client.get(LIST))["results"][0]
    assert row["id"] == conversation.pk
    assert row["status"] == "open"
    assert row["channel"] == {"id": conversation.channel_id, "kind": "twilio_whatsapp", "name": "WhatsApp"}
    assert row["contact"] == {
        "id": conversation.contact_id,
        "name": "Siti Rahman",
        "phone": "+60123456789",
        "email": "siti.rahman@example.com",
    }
    assert row["assignee"] == {"id": alice.pk, "username": "alice"}
    assert row["has_unread"] is True
    assert row["reply_window"]["open"] is True
    closes_at = conversation.last_inbound_at + timedelta(hours=24)
    assert row["reply_window"]["closes_at"] == closes_at.isoformat().replace("+00:00", "Z")
    assert row["last_inbound_at"] is not None and row["last_message_at"] is not None


def test_reply_window_closed_after_24_hours(alice_client, whatsapp, customer):
    long_ago = timezone.now() - timedelta(hours=25)
    factories.ConversationFactory(channel=whatsapp, contact=customer, last_inbound_at=long_ago)
    window = body(alice_client.get(LIST))["results"][0]["reply_window"]
    assert window["open"] is False
    assert window["warning"] == (
        "This contact hasn't messaged you for more than 24 hours; WhatsApp may require a template message."
    )


def test_filters(alice_client, alice, bob, whatsapp, acme):
    other_channel = factories.ChannelFactory(organization=acme, name="Support line")
    mine, bobs, unassigned, resolved, elsewhere = make_conversations(whatsapp, 4) + make_conversations(other_channel, 1)
    Conversation.objects.filter(pk=mine.pk).update(assignee=alice)
    Conversation.objects.filter(pk=bobs.pk).update(assignee=bob)
    Conversation.objects.filter(pk=resolved.pk).update(status="resolved")

    def ids(**params):
        response = alice_client.get(LIST, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in body(response)["results"]}

    assert ids(assignee="me") == {mine.pk}
    assert ids(assignee=str(bob.pk)) == {bobs.pk}
    assert ids(assignee="unassigned") == {unassigned.pk, resolved.pk, elsewhere.pk}
    assert ids(status="resolved") == {resolved.pk}
    assert ids(channel=other_channel.pk) == {elsewhere.pk}
    assert ids(status="open", channel=whatsapp.pk, assignee="unassigned") == {unassigned.pk}


@pytest.mark.parametrize(
    ("params", "code"),
    [({"status": "closed"}, "invalid"), ({"assignee": "someone"}, "invalid"), ({"limit": "500"}, "invalid_limit"),
     ({"cursor": "not-a-cursor"}, "invalid_cursor")],
)
def test_bad_parameters_answer_400_with_the_error_shape(alice_client, whatsapp, params, code):
    response = alice_client.get(LIST, params)
    assert response.status_code == 400
    assert body(response)["error"]["code"] == code
    assert body(response)["error"]["message"]


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_list_query_count_does_not_grow_with_rows(who, alice_client, bob_client, bob, whatsapp, grant,
                                                  django_assert_num_queries):
    client = alice_client if who == "alice" else bob_client
    grant(bob, whatsapp)
    make_conversations(whatsapp, 3)
    client.get(LIST)  # the first request of a session stores its organization
    with CaptureQueriesContext(connection) as baseline:
        assert len(body(client.get(LIST, {"limit": 100}))["results"]) == 3
    make_conversations(whatsapp, 27)
    with django_assert_num_queries(len(baseline)):
        assert len(body(client.get(LIST, {"limit": 100}))["results"]) == 30
    # Session, user, membership, and one query for the page.
    assert len(baseline) <= 5


def test_detail_and_update(alice_client, bob, conversation):
    url = f"/api/v1/conversations/{conversation.pk}/"
    assert body(alice_client.get(url))["id"] == conversation.pk

    response = alice_client.patch(url, {"status": "pending", "assignee": bob.pk}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert body(response)["status"] == "pending"
    assert body(response)["assignee"] == {"id": bob.pk, "username": "bob"}
    conversation.refresh_from_db()
    assert conversation.status == "pending" and conversation.assignee == bob

    response = alice_client.patch(url, {"assignee": None}, content_type="application/json")
    assert body(response)["assignee"] is None and body(response)["status"] == "pending"


def test_update_refuses_a_stranger_and_a_bad_status(alice_client, charlie, conversation):
    url = f"/api/v1/conversations/{conversation.pk}/"
    response = alice_client.patch(url, {"assignee": charlie.pk}, content_type="application/json")
    assert response.status_code == 404
    assert body(response) == {
        "error": {"code": "assignee_not_member", "message": "That person is not a member of this organization."}
    }
    response = alice_client.patch(url, {"status": "closed"}, content_type="application/json")
    assert response.status_code == 400 and body(response)["error"]["code"] == "invalid"
    conversation.refresh_from_db()
    assert conversation.assignee is None and conversation.status == "open"


def test_reopening_when_another_is_open_is_refused(alice_client, conversation):
    Conversation.objects.filter(pk=conversation.pk).update(status="resolved")
    factories.ConversationFactory(channel=conversation.channel, contact=conversation.contact)
    response = alice_client.patch(
        f"/api/v1/conversations/{conversation.pk}/", {"status": "open"}, content_type="application/json"
    )
    assert response.status_code == 409
    assert body(response)["error"] == {
        "code": "already_open",
        "message": "This contact already has an open conversation on this channel.",
    }


def test_agent_sees_only_conversations_of_channels_given_to_them(bob_client, bob, whatsapp, acme, grant):
    hidden_channel = factories.ChannelFactory(organization=acme, name="VIP line")
    visible = make_conversations(whatsapp, 2)
    hidden = make_conversations(hidden_channel, 1)[0]
    assert body(bob_client.get(LIST))["results"] == []

    grant(bob, whatsapp)
    assert {row["id"] for row in body(bob_client.get(LIST))["results"]} == {c.pk for c in visible}
    assert bob_client.get(f"/api/v1/conversations/{hidden.pk}/").status_code == 404
    assert bob_client.get(f"/api/v1/conversations/{hidden.pk}/messages/").status_code == 404
    assert bob_client.get(LIST, {"channel": hidden_channel.pk}).json()["results"] == []
