"""The inbox's websockets, through the full ASGI application (origin check, session auth) and the
real Redis channel layer: every payload crosses msgpack, so only ids and strings go through."""

import json
import re
import zoneinfo
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from apps.conversations import events, selectors, services
from apps.conversations.models import ConversationRead
from apps.inbox import broadcast, live
from apps.inbox.middleware import zone_from_name
from config.asgi import application
from tests import factories
from tests.inbox.conftest import session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_layer")]

ORIGIN = b"http://testserver"


def communicator(path: str, cookie: bytes | None = None, origin: bytes = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin)]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.fixture
def conversation(whatsapp, customer):
    return factories.ConversationFactory(channel=whatsapp, contact=customer)


def record_inbound(conversation, text: str, external_id: str):
    with transaction.atomic():
        message, _ = services.message_record_inbound(conversation=conversation, external_id=external_id, text=text)
    return message


def run(scenario):
    async_to_sync(scenario)()


def test_unauthenticated_socket_is_refused():
    async def scenario():
        ws = communicator("/ws/inbox/")
        connected, code = await ws.connect()
        assert (connected, code) == (False, 4403)
        await ws.disconnect()

    run(scenario)


def test_foreign_origin_is_refused(alice, acme):
    cookie = session_cookie(alice, acme)

    async def scenario():
        ws = communicator("/ws/inbox/", cookie, origin=b"https://evil.example")
        connected, _ = await ws.connect()
        assert not connected
        await ws.disconnect()

        same_origin = communicator("/ws/inbox/", cookie)
        connected, _ = await same_origin.connect()
        assert connected
        await same_origin.disconnect()

    run(scenario)


def test_watched_conversation_receives_bubble_and_row_for_inbound_message(alice, acme, conversation):
    cookie = session_cookie(alice, acme)
    services.conversation_mark_read(conversation=conversation, user=alice)  # opened before

    async def scenario():
        ws = communicator(f"/ws/inbox/?conversation={conversation.pk}", cookie)
        assert (await ws.connect())[0]
        message = await sync_to_async(record_inbound)(conversation, "Hello <b>there</b>\nsecond line", "SM" + "a" * 32)
        html = await ws.receive_from(timeout=3)  # message_created: bubble, banner and row in one frame
        # The conversation_updated that follows a message is for integrations: the row came already.
        assert await ws.receive_nothing(timeout=0.3)
        assert '<div id="messages" hx-swap-oob="beforeend">' in html
        assert f'id="message-{message.pk}"' in html
        assert f'id="message-{message.pk}-status"' in html
        assert "Hello &lt;b&gt;there&lt;/b&gt;" in html and "<b>there</b>" not in html
        # The row moves to the top of the list: removed where it was, inserted first.
        assert f'<div id="conversation-{conversation.pk}" hx-swap-oob="delete"></div>' in html
        assert '<div id="conversation-list" hx-swap-oob="afterbegin">' in html
        assert html.index('id="conversation-list"') < html.rindex(f'id="conversation-{conversation.pk}"')
        assert "Siti Rahman" in html
        assert "unread" not in html  # read as it arrives: no badge on the row
        # The customer wrote: the reply window banner is replaced, now open.
        banner = re.search(r'<div id="window-banner"[^>]*>(.*?)</div>', html, re.S)
        assert banner and 'is-open' in banner.group(0) and 'hx-swap-oob="outerHTML"' in banner.group(0)
        assert "Window open: 23 h 59 min left" in banner.group(1)
        assert 'class="row active"' in html or 'active' in html.split(f'id="conversation-{conversation.pk}"')[-1][:80]
        await ws.disconnect()

    run(scenario)
    # Watching the conversation reads it: no unread badge for alice.
    assert ConversationRead.objects.filter(conversation=conversation, user=alice).exists()


def test_socket_not_watching_gets_row_with_unread_state_but_no_bubble(alice, acme, conversation):
    cookie = session_cookie(alice, acme)

    async def scenario():
        ws = communicator("/ws/inbox/", cookie)
        assert (await ws.connect())[0]
        message = await sync_to_async(record_inbound)(conversation, "Are you there?", "SM" + "b" * 32)
        first = await ws.receive_from(timeout=3)
        assert f'id="message-{message.pk}"' not in first
        assert '<div id="conversation-list" hx-swap-oob="afterbegin">' in first
        assert await ws.receive_nothing(timeout=0.3)  # not the same row again for its conversation_updated

        def set_pending():
            services.conversation_set_status(conversation=conversation, status="pending")

        await sync_to_async(set_pending)()
        row = await ws.receive_from(timeout=3)  # conversation_updated: the row in place
        assert row.startswith(f'<a id="conversation-{conversation.pk}"') or f'id="conversation-{conversation.pk}"' in row
        assert 'hx-swap-oob="outerHTML"' in row
        assert "Are you there?" in first
        # A new inbound message is unread for every socket but the watcher's; a later update keeps
        # whatever badge the browser shows (rendered once for all, not per viewer).
        assert 'class="row unread"' in first and 'class="badge"' in first
        assert "data-keep-state" in row
        await ws.disconnect()

    run(scenario)
    assert not ConversationRead.objects.filter(conversation=conversation, user=alice).exists()


def swap_targets(frame: str) -> list[str]:
    """What each out-of-band part of a frame swaps: `#<id>` of the part, or its own selector; a
    resync hint as `resync:<fragment>`."""
    targets = []
    for attrs in re.findall(r"<\w+\s([^>]*\bhx-swap-oob=\"[^\"]*\"[^>]*)>", frame):
        swap = re.search(r'hx-swap-oob="([^"]*)"', attrs).group(1)
        element_id = re.search(r'\bid="([^"]*)"', attrs)
        targets.append(swap.split(":", 1)[1] if ":" in swap else f"#{element_id.group(1)}")
    targets += [f"resync:{name}" for name in re.findall(r'data-resync="([^"]*)"', frame)]
    return targets


def test_sockets_not_watching_the_conversation_get_nothing_for_its_thread(alice, acme, conversation, whatsapp):
    cookie = session_cookie(alice, acme)
    elsewhere = factories.ConversationFactory(channel=whatsapp, contact=factories.ContactFactory(organization=acme))
    outbound = factories.MessageFactory(conversation=conversation, direction="outbound", status="sent", sender=alice)

    def thread_parts(frame: str) -> list[str]:
        return [target for target in swap_targets(frame)
                if target in ("#messages", "#window-banner", "resync:messages") or target.startswith("#message-")]

    async def scenario():
        # The list page (no conversation open) and a page watching another conversation.
        sockets = [communicator("/ws/inbox/", cookie), communicator(f"/ws/inbox/?conversation={elsewhere.pk}", cookie)]
        for ws in sockets:
            assert (await ws.connect())[0]
        await sync_to_async(record_inbound)(conversation, "For the list only", "SM" + "5" * 32)
        await sync_to_async(record_inbound)(conversation, "y" * (live.MAX_FRAGMENTS_CHARS + 10), "SM" + "3" * 32)
        for ws in sockets:
            for _ in range(2):
                frame = await ws.receive_from(timeout=3)
                assert swap_targets(frame) == [f"#conversation-{conversation.pk}", "#conversation-list"], frame
                assert thread_parts(frame) == []

        def deliver():
            with transaction.atomic():
                services.message_status_apply(message=outbound, status="delivered")

        await sync_to_async(deliver)()
        for ws in sockets:
            assert await ws.receive_nothing(timeout=0.3)  # a status is only for the thread showing it
            await ws.disconnect()

    run(scenario)


def test_status_change_replaces_the_status_element(alice, acme, conversation):
    cookie = session_cookie(alice, acme)
    outbound = factories.MessageFactory(conversation=conversation, direction="outbound", status="sent", sender=alice)

    async def scenario():
        ws = communicator(f"/ws/inbox/?conversation={conversation.pk}", cookie)
        assert (await ws.connect())[0]

        def deliver():
            with transaction.atomic():
                services.message_status_apply(message=outbound, status="delivered")

        await sync_to_async(deliver)()
        html = await ws.receive_from(timeout=3)
        assert html.startswith("<")
        assert f'id="message-{outbound.pk}-status"' in html
        assert 'hx-swap-oob="outerHTML"' in html
        assert f'id="message-{outbound.pk}"' not in html.replace(f'id="message-{outbound.pk}-status"', "")
        await ws.disconnect()

    run(scenario)


def test_status_change_is_not_sent_to_sockets_on_other_conversations(alice, acme, conversation, whatsapp):
    cookie = session_cookie(alice, acme)
    other = factories.ConversationFactory(channel=whatsapp, contact=factories.ContactFactory(organization=acme))
    outbound = factories.MessageFactory(conversation=conversation, direction="outbound", status="sent")

    async def scenario():
        elsewhere = communicator(f"/ws/inbox/?conversation={other.pk}", cookie)
        here = communicator(f"/ws/inbox/?conversation={conversation.pk}", cookie)
        assert (await elsewhere.connect())[0] and (await here.connect())[0]

        def read():
            with transaction.atomic():
                services.message_status_apply(message=outbound, status="read")

        await sync_to_async(read)()
        assert f'id="message-{outbound.pk}-status"' in await here.receive_from(timeout=3)
        assert await elsewhere.receive_nothing(timeout=0.3)
        await elsewhere.disconnect()
        await here.disconnect()

    run(scenario)


def test_other_organization_sees_nothing_and_cannot_subscribe(alice, acme, charlie, globex, conversation):
    alice_cookie = session_cookie(alice, acme)
    charlie_cookie = session_cookie(charlie, globex)

    async def scenario():
        forbidden = communicator(f"/ws/inbox/?conversation={conversation.pk}", charlie_cookie)
        connected, _ = await forbidden.connect()
        assert connected
        assert await forbidden.receive_output(timeout=3) == {"type": "websocket.close", "code": 4404}

        missing = communicator("/ws/inbox/?conversation=987654321", charlie_cookie)
        await missing.connect()
        assert await missing.receive_output(timeout=3) == {"type": "websocket.close", "code": 4404}

        watcher = communicator("/ws/inbox/", charlie_cookie)
        witness = communicator("/ws/inbox/", alice_cookie)
        assert (await watcher.connect())[0] and (await witness.connect())[0]
        await sync_to_async(record_inbound)(conversation, "Acme only", "SM" + "c" * 32)
        assert "Acme only" in await witness.receive_from(timeout=3)
        assert await watcher.receive_nothing(timeout=0.5)
        await watcher.disconnect()
        await witness.disconnect()

    run(scenario)


def test_agent_without_the_channel_sees_nothing_until_given_it(alice, acme, bob, conversation, whatsapp):
    alice_cookie = session_cookie(alice, acme)
    bob_cookie = session_cookie(bob, acme)

    async def scenario():
        forbidden = communicator(f"/ws/inbox/?conversation={conversation.pk}", bob_cookie)
        await forbidden.connect()
        assert await forbidden.receive_output(timeout=3) == {"type": "websocket.close", "code": 4404}

        bob_ws = communicator("/ws/inbox/", bob_cookie)
        alice_ws = communicator("/ws/inbox/", alice_cookie)
        assert (await bob_ws.connect())[0] and (await alice_ws.connect())[0]
        await sync_to_async(record_inbound)(conversation, "For the WhatsApp team", "SM" + "d" * 32)
        assert "For the WhatsApp team" in await alice_ws.receive_from(timeout=3)
        assert await bob_ws.receive_nothing(timeout=0.5)
        await bob_ws.disconnect()
        await alice_ws.disconnect()

        await sync_to_async(assign_perm)("providers.view_channel", bob, whatsapp)
        granted = communicator(f"/ws/inbox/?conversation={conversation.pk}", bob_cookie)
        assert (await granted.connect())[0]
        message = await sync_to_async(record_inbound)(conversation, "Now bob sees it", "SM" + "e" * 32)
        assert f'id="message-{message.pk}"' in await granted.receive_from(timeout=3)
        await granted.disconnect()

    run(scenario)


def test_list_filters_remove_rows_that_leave_the_view(alice, acme, bob, conversation):
    cookie = session_cookie(alice, acme)
    conversation.assignee = alice
    conversation.save()

    async def scenario():
        mine = communicator("/ws/inbox/?view=mine", cookie)
        assert (await mine.connect())[0]

        def assign_to_bob():
            services.conversation_assign(conversation=conversation, assignee=bob, membership=None)

        await sync_to_async(assign_to_bob)()
        assert await mine.receive_from(timeout=3) == f'<div id="conversation-{conversation.pk}" hx-swap-oob="delete"></div>'
        # Not in "Mine" any more: a new message does not bring it back into that list.
        await sync_to_async(record_inbound)(conversation, "Still here", "SM" + "f" * 32)
        assert await mine.receive_nothing(timeout=0.5)
        await mine.disconnect()

    run(scenario)


def test_events_consumer_delivers_json_to_its_organization_only(alice, acme, charlie, globex, conversation):
    alice_cookie = session_cookie(alice, acme)
    charlie_cookie = session_cookie(charlie, globex)

    async def scenario():
        acme_ws = communicator("/ws/v1/events/", alice_cookie)
        globex_ws = communicator("/ws/v1/events/", charlie_cookie)
        assert (await acme_ws.connect())[0] and (await globex_ws.connect())[0]
        message = await sync_to_async(record_inbound)(conversation, "json", "SM" + "0" * 32)
        event = json.loads(await acme_ws.receive_from(timeout=3))
        assert event == {
            "type": "message.created",
            "organization_id": acme.pk,
            "channel_id": conversation.channel_id,
            "conversation_id": conversation.pk,
            "message_id": message.pk,
        }
        assert json.loads(await acme_ws.receive_from(timeout=3))["type"] == "conversation.updated"
        assert await globex_ws.receive_nothing(timeout=0.5)
        await acme_ws.send_json_to({"type": "ping"})
        assert await acme_ws.receive_json_from(timeout=3) == {"type": "pong"}
        await acme_ws.disconnect()
        await globex_ws.disconnect()

    run(scenario)


def test_rendering_takes_the_same_queries_whatever_the_attachments(conversation, django_assert_num_queries):
    few = factories.MessageFactory(conversation=conversation)
    many = factories.MessageFactory(conversation=conversation)
    for message, count in ((few, 1), (many, 4)):
        for n in range(count):
            message.attachments.create(
                organization=conversation.organization, file=f"attachments/{n}.png", content_type="image/png",
                filename=f"{n}.png", size=10,
            )

    def render(message):
        return live.message_created_fragments(conversation_id=conversation.pk, message_id=message.pk)["fragments"]

    render(few)  # warm caches (content types) so both counts compare like with like
    with CaptureQueriesContext(connection) as few_queries:
        assert f'id="message-{few.pk}"' in render(few)["bubble"]
    with django_assert_num_queries(len(few_queries.captured_queries)):
        assert f'id="message-{many.pk}"' in render(many)["bubble"]


def test_each_event_is_rendered_once_whatever_the_number_of_sockets(alice, bob, acme, conversation, whatsapp,
                                                                     monkeypatch):
    assign_perm("providers.view_channel", bob, whatsapp)
    renders = []
    real = live.message_created_fragments
    monkeypatch.setattr(live, "message_created_fragments", lambda **ids: renders.append(ids) or real(**ids))
    cookies = [session_cookie(alice, acme), session_cookie(bob, acme), session_cookie(alice, acme)]

    async def scenario():
        sockets = [communicator("/ws/inbox/", cookie) for cookie in cookies]
        for ws in sockets:
            assert (await ws.connect())[0]

        def queries_per_event():
            with CaptureQueriesContext(connection) as publish:
                record_inbound(conversation, "Once for all", "SM" + "7" * 32)
            return len(publish.captured_queries)

        await sync_to_async(queries_per_event)()
        frames = [await ws.receive_from(timeout=3) for ws in sockets]
        assert all("Once for all" in frame for frame in frames)
        assert frames[0] == frames[1] == frames[2]  # the same HTML for every agent
        for ws in sockets:
            await ws.disconnect()

    run(scenario)
    assert len(renders) == 1


def test_consumer_runs_no_query_per_event(alice, acme, conversation, monkeypatch):
    from apps.inbox import consumers

    cookie = session_cookie(alice, acme)
    database_calls = []

    def counting(function):
        database_calls.append(function)
        return consumers_database_sync_to_async(function)

    consumers_database_sync_to_async = consumers.database_sync_to_async

    async def scenario():
        ws = communicator("/ws/inbox/", cookie)
        assert (await ws.connect())[0]
        fragments = await sync_to_async(live.conversation_updated_fragments)(conversation_id=conversation.pk)
        event = {"type": "inbox.conversation_updated", "organization_id": acme.pk,
                 "channel_id": conversation.channel_id, "conversation_id": conversation.pk, **fragments}
        monkeypatch.setattr(consumers, "database_sync_to_async", counting)
        for _ in range(5):
            await get_channel_layer().group_send(broadcast.org_group(acme.pk), event)
            assert f'id="conversation-{conversation.pk}"' in await ws.receive_from(timeout=3)
        assert database_calls == []
        await ws.disconnect()

    run(scenario)


def test_oversized_fragments_become_a_fetch_hint(alice, acme, conversation):
    cookie = session_cookie(alice, acme)

    async def scenario():
        ws = communicator(f"/ws/inbox/?conversation={conversation.pk}", cookie)
        assert (await ws.connect())[0]
        long_text = "x" * (live.MAX_FRAGMENTS_CHARS + 10)
        message = await sync_to_async(record_inbound)(conversation, long_text, "SM" + "6" * 32)
        html = await ws.receive_from(timeout=3)
        assert long_text not in html and f'id="message-{message.pk}"' not in html
        assert '<span data-resync="messages"></span>' in html  # the browser fetches #messages once
        assert '<div id="conversation-list" hx-swap-oob="afterbegin">' in html  # the row still rides along
        await ws.disconnect()

    run(scenario)


def test_sender_is_named_and_marked_for_the_browser_to_say_you(alice, acme, conversation):
    cookie = session_cookie(alice, acme)
    alice.first_name, alice.last_name = "Alice", "Tan"
    alice.save()
    outbound = factories.MessageFactory(conversation=conversation, direction="outbound", status="sent", sender=alice,
                                        sender_kind="agent")

    async def scenario():
        ws = communicator(f"/ws/inbox/?conversation={conversation.pk}", cookie)
        assert (await ws.connect())[0]

        def publish():
            with transaction.atomic():
                events.message_created(outbound)

        await sync_to_async(publish)()
        html = await ws.receive_from(timeout=3)
        assert f'<div class="bubble-sender" data-sender-id="{alice.pk}">Alice Tan</div>' in html
        await ws.disconnect()

    run(scenario)


def test_access_changed_reloads_the_sockets_channels(alice, acme, bob, conversation, whatsapp):
    bob_cookie = session_cookie(bob, acme)

    async def scenario():
        bob_ws = communicator("/ws/inbox/", bob_cookie)
        assert (await bob_ws.connect())[0]
        await sync_to_async(assign_perm)("providers.view_channel", bob, whatsapp)
        await sync_to_async(broadcast.access_changed)(organization_id=acme.pk)
        await bob_ws.receive_nothing(timeout=0.5)  # the reload runs in the background
        await sync_to_async(record_inbound)(conversation, "Now for bob too", "SM" + "4" * 32)
        assert "Now for bob too" in await bob_ws.receive_from(timeout=3)
        await bob_ws.disconnect()

    run(scenario)


def test_times_are_rendered_once_in_utc_for_the_browser_to_format(alice, acme, conversation):
    cookie = session_cookie(alice, acme) + b"; tz=Asia/Kuala_Lumpur"
    outbound = factories.MessageFactory(
        conversation=conversation, direction="outbound", status="pending", sender=alice,
        created_at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC),
    )

    async def scenario():
        ws = communicator(f"/ws/inbox/?conversation={conversation.pk}", cookie)
        assert (await ws.connect())[0]

        def publish():
            with transaction.atomic():
                events.message_created(outbound)

        await sync_to_async(publish)()
        html = await ws.receive_from(timeout=3)
        # The same frame for every agent whatever their zone: UTC, marked for inbox.js to show in
        # the browser's zone (the e2e test sees 07:30 (+08) in Kuala Lumpur). Pages still format
        # on the server in the tz cookie's zone.
        assert '<time datetime="2026-03-01T23:30:00+00:00" title="Sun 1 Mar 2026, 23:30:00 (UTC)" data-clock data-browser-time>23:30</time>' in html
        assert 'aria-label="Sending"' in html  # outbound from alice: the pending clock
        await ws.disconnect()

    run(scenario)


def test_row_unread_state_is_per_viewer_and_cleared_by_reading(alice, bob, acme, conversation, whatsapp):
    assign_perm("providers.view_channel", bob, whatsapp)
    # Message ids well apart from conversation ids, so a mixed-up reference cannot pass by luck.
    factories.MessageFactory.create_batch(3, conversation=factories.ConversationFactory(channel=whatsapp))
    services.conversation_mark_read(conversation=conversation, user=alice)
    message = record_inbound(conversation, "Unread for both", "SM" + "9" * 32)
    assert message.pk != conversation.pk

    def row(user):
        # The page's list: per viewer (the socket's rows are shared; the browser keeps the badge).
        found = selectors.conversation_list(membership=user.memberships.get()).get(pk=conversation.pk)
        return render_to_string("inbox/_conversation_row.html", {"conversation": found, "viewer": user})

    assert 'class="badge"' in row(alice) and 'class="badge"' in row(bob)
    services.conversation_mark_read(conversation=conversation, user=alice)
    assert 'class="badge"' not in row(alice)
    assert 'class="badge"' in row(bob)


def test_time_zone_cookie_is_validated():
    assert zone_from_name("Asia/Kuala_Lumpur") == zoneinfo.ZoneInfo("Asia/Kuala_Lumpur")
    assert zone_from_name("Asia%2FKuala_Lumpur") == zoneinfo.ZoneInfo("Asia/Kuala_Lumpur")
    assert zone_from_name("Not/AZone") is None
    assert zone_from_name("../../etc/passwd") is None
    assert zone_from_name("") is None
    assert zone_from_name(None) is None


def test_filters_come_from_the_query_like_the_list_page():
    from apps.inbox.forms import ListFilters

    filters = ListFilters.parse({"view": ["mine"], "status": ["open"], "channel": ["7"]})
    assert filters == ListFilters(view="mine", status="open", channel=7) and filters.assignee == "me"
    assert ListFilters.parse({"status": ["<script>"], "channel": ["x"]}) == ListFilters()
