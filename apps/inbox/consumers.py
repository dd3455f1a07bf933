"""Websocket consumers. Every connection is authenticated by the session, bound to the session's
organization, and forwards only events about channels its user may see.

An event reaches every socket of its organization's group; a consumer's work per event is a set
lookup, picking the event's parts for its socket and joining them, and a send (every part is
rendered once, complete, by broadcast), never a database query or markup of its own. The
set of visible channels is loaded on connect and reloaded when access changes and every
CHANNELS_REFRESH_S seconds, in the background.
"""

import asyncio
import logging
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts import selectors as account_selectors
from apps.accounts.middleware import SESSION_KEY
from apps.conversations import services as conversation_services
from apps.conversations.models import Conversation
from apps.inbox import broadcast, live
from apps.inbox.forms import ListFilters
from apps.providers import selectors as channel_selectors

log = logging.getLogger(__name__)

# Closed after the handshake, so the browser sees the code and does not retry.
CLOSE_NOT_FOUND = 4404
CLOSE_NOT_MEMBER = 4403
# A permission taken away reaches open sockets within this many seconds at the latest.
CHANNELS_REFRESH_S = 60.0
# The watcher's read marker: one write per conversation per this many seconds, not per message.
READ_MARK_DELAY_S = 1.0
# What the JSON events socket forwards; the rendered fragments stay on the server side.
EVENT_FIELDS = ("organization_id", "channel_id", "conversation_id", "message_id", "status")


class OrganizationConsumer(AsyncJsonWebsocketConsumer):
    """Base: resolves the membership and the visible channels, joins the organization group."""

    async def connect(self):
        self.membership = await self._membership()
        if self.membership is None:
            await self.close(code=CLOSE_NOT_MEMBER)
            return
        if not await self.subscription_allowed():
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.channel_ids = await self._channel_ids()
        self.channels_loaded_at = time.monotonic()
        self.refreshing = None
        self.group = broadcast.org_group(self.membership.organization_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if getattr(self, "refreshing", None):
            self.refreshing.cancel()

    async def inbox_access_changed(self, event):
        self._refresh_channels()

    def _refresh_channels(self) -> None:
        """Reload the member's channels in the background; events meanwhile use the current set."""
        if self.refreshing is None or self.refreshing.done():
            self.refreshing = asyncio.ensure_future(self._reload_access())

    async def _reload_access(self):
        self.channels_loaded_at = time.monotonic()
        try:
            membership = await self._membership()
            if membership is None or membership.organization_id != self.membership.organization_id:
                await self.close(code=CLOSE_NOT_MEMBER)
                return
            self.membership = membership
            self.channel_ids = await self._channel_ids()
        except Exception:  # noqa: BLE001 - keep the current set and try again later
            log.warning("reloading the socket's channels failed", exc_info=True)

    async def _channel_ids(self):
        return await database_sync_to_async(channel_selectors.channel_ids_visible)(membership=self.membership)

    async def subscription_allowed(self) -> bool:
        """Subclasses refuse subscriptions to things the member may not see."""
        return True

    @database_sync_to_async
    def _membership(self):
        user = self.scope.get("user")
        session = self.scope.get("session")
        if user is None or not user.is_authenticated or session is None:
            return None
        organization_id = session.get(SESSION_KEY)
        if organization_id is None:
            return None
        return account_selectors.membership_get(user=user, organization_id=organization_id)

    def visible(self, event: dict) -> bool:
        if time.monotonic() - self.channels_loaded_at > CHANNELS_REFRESH_S:
            self._refresh_channels()
        return event.get("organization_id") == self.membership.organization_id and event.get("channel_id") in self.channel_ids


class EventsConsumer(OrganizationConsumer):
    """`/ws/v1/events/`: JSON events for integrations: {"type": "message.created", ids...}."""

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def _forward(self, event: dict, name: str):
        if self.visible(event):
            await self.send_json({"type": name, **{k: event[k] for k in EVENT_FIELDS if k in event}})

    async def inbox_message_created(self, event):
        await self._forward(event, "message.created")

    async def inbox_message_status_changed(self, event):
        await self._forward(event, "message.status_changed")

    async def inbox_conversation_updated(self, event):
        await self._forward(event, "conversation.updated")


class InboxConsumer(OrganizationConsumer):
    """`/ws/inbox/?conversation=<id>`: the inbox page's live updates as htmx out-of-band HTML.

    The query may also carry the list's filters (`view`, `status`, `channel`) so rows that leave
    or enter the viewer's list are removed or added. Frames are hints; the page resyncs on
    reconnect and polls while the socket is down.
    """

    async def subscription_allowed(self) -> bool:
        params = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.filters = ListFilters.parse(params)
        self.watching = None
        conversation = (params.get("conversation") or [""])[0]
        if not conversation:
            return True
        # Another organization's id, a channel this agent was not given, or no such
        # conversation: all answer the same, so existence is not revealed.
        if not await database_sync_to_async(live.conversation_visible)(
            membership=self.membership, conversation_id=conversation
        ):
            return False
        self.watching = int(conversation)
        return True

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """The page sends nothing we act on."""

    async def disconnect(self, code):
        await super().disconnect(code)
        if getattr(self, "read_pending", None):
            self.read_pending.cancel()
            await self._mark_read(now=True)

    async def inbox_message_created(self, event):
        if not self.visible(event):
            return
        fragments = event.get("fragments") or {}
        parts = []
        watching = event["conversation_id"] == self.watching
        # Only the socket watching the conversation has its thread: nobody else gets parts for it.
        if watching:
            if fragments.get("bubble"):
                parts += [fragments["bubble"], fragments.get("banner", "")]
            else:
                parts.append(live.resync_hint("messages"))
            # The agent is looking at it: read as it arrives, so the badge stays clear.
            self._read_soon()
        in_list = self._in_list(event)
        if in_list is None:
            parts.append(live.resync_hint("conversation-list"))
        elif in_list:
            # Moved to the top of the list.
            parts.append(fragments.get("row_active" if watching else "row") or live.resync_hint("conversation-list"))
        await self._send_parts(parts)

    async def inbox_message_status_changed(self, event):
        if event["conversation_id"] != self.watching or not self.visible(event):
            return
        status = (event.get("fragments") or {}).get("status")
        await self._send_parts([status or live.resync_hint("messages")])

    async def inbox_conversation_updated(self, event):
        if event.get("after_message") or not self.visible(event):
            return
        fragments = event.get("fragments") or {}
        in_list = self._in_list(event)
        if in_list is None:
            part = None
        elif in_list:
            # Replaced in place.
            part = fragments.get("row_active" if event["conversation_id"] == self.watching else "row")
        else:
            # It left the viewer's list (assigned away from "Mine", resolved while filtering on open...).
            part = fragments.get("row_gone")
        await self._send_parts([part or live.resync_hint("conversation-list")])

    def _in_list(self, event: dict) -> bool | None:
        """None: the event carries no state (its render failed), the page fetches its list."""
        if not event.get("conversation"):
            return None
        return live.row_in_list(
            event["conversation"], channel_id=event["channel_id"], filters=self.filters, user_id=self.membership.user_id
        )

    async def _send_parts(self, parts: list[str]):
        html = "".join(parts)
        if html:
            await self.send(text_data=html)

    def _read_soon(self) -> None:
        if getattr(self, "read_pending", None) is None or self.read_pending.done():
            self.read_pending = asyncio.ensure_future(self._mark_read())

    async def _mark_read(self, now: bool = False):
        if not now:
            await asyncio.sleep(READ_MARK_DELAY_S)
        self.read_pending = None
        try:
            # One write, no render: the conversation's id is all the read marker needs.
            await database_sync_to_async(conversation_services.conversation_mark_read)(
                conversation=Conversation(pk=self.watching), user=self.membership.user
            )
        except Exception:  # noqa: BLE001 - the badge comes back on the next page load at worst
            log.warning("marking the watched conversation read failed", exc_info=True)
