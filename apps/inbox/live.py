"""Out-of-band htmx fragments that the inbox consumer sends to one viewer.

Everything here is synchronous and reads through the tenant-scoped selectors, so a frame never
carries a conversation or message the viewer may not see. Each function loads what one event
needs in a fixed number of queries and renders the same fragment files the pages render
(`inbox/_message.html`, `inbox/_message_status.html`, `inbox/_conversation_row.html`).
Returns "" when there is nothing this viewer should receive.
"""

import zoneinfo
from dataclasses import dataclass
from urllib.parse import urlencode

from django.template.loader import render_to_string
from django.utils import timezone

from apps.accounts.models import Membership
from apps.conversations import selectors as conversation_selectors
from apps.conversations import services as conversation_services
from apps.conversations.models import Conversation, Message
from apps.providers.policies import POLICIES


@dataclass(frozen=True)
class ListFilters:
    """The filters of the list the viewer has open (the same query parameters as the page)."""

    status: str = ""
    channel_id: int | None = None
    assignee: str = ""  # "me", "unassigned" or ""

    @property
    def query(self) -> str:
        """The list's query string, kept on row links like the page keeps it."""
        params = {"view": {"me": "mine"}.get(self.assignee, self.assignee), "channel": self.channel_id, "status": self.status}
        kept = {key: value for key, value in params.items() if value}
        return "?" + urlencode(kept) if kept else ""


def filters_from_query(params: dict[str, list[str]]) -> ListFilters:
    """Read `status`, `channel` and `view` (mine / unassigned / all) as the list page does."""
    status = _first(params, "status")
    channel = _first(params, "channel")
    view = _first(params, "view")
    return ListFilters(
        status=status if status in Conversation.Status.values else "",
        channel_id=int(channel) if channel.isdigit() else None,
        assignee={"mine": "me", "unassigned": "unassigned"}.get(view, ""),
    )


def conversation_visible(*, membership: Membership, conversation_id) -> bool:
    return conversation_selectors.conversation_list(membership=membership).filter(pk=_as_int(conversation_id)).exists()


def message_created_html(
    *, membership: Membership, conversation_id: int, message_id: int, watching: bool, filters: ListFilters,
    tz: zoneinfo.ZoneInfo | None = None,
) -> str:
    """A new message: its bubble when the viewer has the conversation open, and the
    conversation's row moved to the top of the list."""
    with timezone.override(tz):
        parts = []
        if watching:
            message = _message(membership=membership, conversation_id=conversation_id, message_id=message_id)
            if message is not None:
                # The agent is looking at it: it is read as it arrives, so the badge stays clear.
                conversation_services.conversation_mark_read(conversation=message.conversation, user=membership.user)
                bubble = _render("inbox/_message.html", message=message, membership=membership)
                # Delete first: the sender's page may already hold this bubble from its own send.
                parts.append(f'<div id="message-{message.pk}" hx-swap-oob="delete"></div>')
                parts.append(f'<div id="messages" hx-swap-oob="beforeend">{bubble}</div>')
                if message.direction == Message.Direction.INBOUND:
                    # The customer wrote: the reply window (re)opens.
                    parts.append(_window_banner(message.conversation))
        conversation = _conversation(membership=membership, conversation_id=conversation_id, filters=filters)
        if conversation is not None:
            row = _render_row(conversation, membership=membership, filters=filters, active=watching)
            parts.append(f'<div id="conversation-{conversation.pk}" hx-swap-oob="delete"></div>')
            parts.append(f'<div id="conversation-list" hx-swap-oob="afterbegin">{row}</div>')
        return "".join(parts)


def message_status_html(
    *, membership: Membership, conversation_id: int, message_id: int, tz: zoneinfo.ZoneInfo | None = None
) -> str:
    """The message's delivery state, replacing `#message-<pk>-status` in place."""
    with timezone.override(tz):
        message = _message(membership=membership, conversation_id=conversation_id, message_id=message_id)
        if message is None:
            return ""
        return _oob(_render("inbox/_message_status.html", message=message, membership=membership), "outerHTML")


def conversation_row_html(
    *, membership: Membership, conversation_id: int, filters: ListFilters, watching: bool = False,
    tz: zoneinfo.ZoneInfo | None = None,
) -> str:
    """The conversation's row replaced in place; removed when it no longer matches the viewer's
    list (assigned away from "Mine", resolved while filtering on open...)."""
    with timezone.override(tz):
        conversation = _conversation(membership=membership, conversation_id=conversation_id, filters=filters)
        if conversation is None:
            if conversation_visible(membership=membership, conversation_id=conversation_id):
                return f'<div id="conversation-{_as_int(conversation_id)}" hx-swap-oob="delete"></div>'
            return ""
        return _oob(_render_row(conversation, membership=membership, filters=filters, active=watching), "outerHTML")


def _window_banner(conversation: Conversation) -> str:
    from apps.conversations import sending

    policy = POLICIES.get(conversation.channel.kind)
    if policy is None or policy.reply_window is None:
        return ""
    window = sending.reply_window_state(conversation, policy)
    return _oob(render_to_string("inbox/_window_banner.html", {"window": window, "conversation": conversation}), "outerHTML")


def _message(*, membership: Membership, conversation_id: int, message_id: int):
    conversation = _conversation(membership=membership, conversation_id=conversation_id, filters=ListFilters())
    if conversation is None:
        return None
    message = conversation_selectors.message_list(conversation=conversation).filter(pk=_as_int(message_id)).first()
    if message is not None:
        message.conversation = conversation  # already loaded, with contact and channel
    return message


def _conversation(*, membership: Membership, conversation_id: int, filters: ListFilters) -> Conversation | None:
    return (
        conversation_selectors.conversation_list(
            membership=membership, status=filters.status, channel_id=filters.channel_id, assignee=filters.assignee
        )
        .filter(pk=_as_int(conversation_id))
        .first()
    )


def _render_row(conversation: Conversation, *, membership: Membership, filters: ListFilters, active: bool) -> str:
    return _render(
        "inbox/_conversation_row.html",
        conversation=conversation,
        membership=membership,
        query=filters.query,
        active_id=conversation.pk if active else None,
    )


def _render(template: str, *, membership: Membership, **context) -> str:
    if "message" in context and "conversation" not in context:
        context["conversation"] = context["message"].conversation
    return render_to_string(template, {**context, "viewer": membership.user, "membership": membership})


def _oob(html: str, swap: str) -> str:
    """Mark a fragment's one top-level element as an out-of-band swap of itself."""
    html = html.strip()
    if not html.startswith("<") or ">" not in html:
        return ""
    tag_end = html.index(">")
    if html[tag_end - 1] == "/":
        tag_end -= 1
    return f'{html[:tag_end]} hx-swap-oob="{swap}"{html[tag_end:]}'


def _first(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name) or [""]
    return values[0].strip()


def _as_int(value) -> int:
    return int(value) if str(value).isdigit() else -1
