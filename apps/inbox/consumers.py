"""Websocket consumers. Every connection is authenticated by the session, bound to the session's
organization, and forwards only events about channels its user may see."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts import selectors as account_selectors
from apps.accounts.middleware import SESSION_KEY
from apps.inbox import broadcast
from apps.providers import selectors as channel_selectors


class OrganizationConsumer(AsyncJsonWebsocketConsumer):
    """Base: resolves the membership and the visible channels, joins the organization group."""

    async def connect(self):
        self.membership = await self._membership()
        if self.membership is None:
            await self.close(code=4403)
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
