"""Websocket consumers. Every connection is authenticated by the session, bound to the session's
organization, and forwards only events about channels its user may see."""

import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts import selectors as account_selectors
from apps.accounts.middleware import SESSION_KEY
from apps.inbox import broadcast, live
from apps.inbox.middleware import zone_from_name
from apps.providers import selectors as channel_selectors

log = logging.getLogger(__name__)

# Closed after the handshake, so the browser sees the code and does not retry.
CLOSE_NOT_FOUND = 4404


class OrganizationConsumer(AsyncJsonWebsocketConsumer):
    """Base: resolves the membership and the visible channels, joins the organization group."""

    async def connect(self):
        self.membership = await self._membership()
        if self.membership is None:
            await self.close(code=4403)
            return
        if not await self.subscription_allowed():
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.channel_ids = await database_sync_to_async(channel_selectors.channel_ids_visible)(
            membership=self.membership
        )
        self.group = broadcast.org_group(self.membership.organization_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

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
        return event.get("organization_id") == self.membership.organization_id and event.get("channel_id") in self.channel_ids


class EventsConsumer(OrganizationConsumer):
    """`/ws/v1/events/`: JSON events for integrations: {"type": "message.created", ids...}."""

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def _forward(self, event: dict, name: str):
        if self.visible(event):
            await self.send_json({"type": name, **{k: v for k, v in event.items() if k != "type"}})

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
        self.filters = live.filters_from_query(params)
        self.tz = zone_from_name(self.scope.get("cookies", {}).get("tz"))
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

    async def inbox_message_created(self, event):
        await self._push(
            event,
            live.message_created_html,
            conversation_id=event["conversation_id"],
            message_id=event["message_id"],
            watching=event["conversation_id"] == self.watching,
            filters=self.filters,
        )

    async def inbox_message_status_changed(self, event):
        if event["conversation_id"] != self.watching:
            return
        await self._push(
            event, live.message_status_html, conversation_id=event["conversation_id"], message_id=event["message_id"]
        )

    async def inbox_conversation_updated(self, event):
        await self._push(
            event,
            live.conversation_row_html,
            conversation_id=event["conversation_id"],
            filters=self.filters,
            watching=event["conversation_id"] == self.watching,
        )

    async def _push(self, event: dict, render, **kwargs):
        if not self.visible(event):
            return
        try:
            html = await database_sync_to_async(render)(membership=self.membership, tz=self.tz, **kwargs)
        except Exception:  # noqa: BLE001 - a frame is a hint; the page resyncs on its own
            log.exception("rendering %s for the inbox socket failed", event.get("type"))
            return
        if html:
            await self.send(text_data=html)
