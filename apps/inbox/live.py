"""Out-of-band htmx fragments for the inbox socket, rendered once per event for every viewer.

The fragments are the same files the pages render (`inbox/_message.html`,
`inbox/_message_status.html`, `inbox/_conversation_row.html`), loaded in a fixed number of
queries. They are not scoped by viewer: the event names its organization group and its
`channel_id`, and each consumer drops what its member may not see before sending anything.
"""

from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlencode

from django.template.loader import render_to_string
from django.utils import timezone

from apps.accounts.models import Membership
from apps.conversations import selectors as conversation_selectors
from apps.conversations.models import Conversation, Message
from apps.providers import catalog


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


# Fragments rendered once per event, for every viewer ----------------------------------------
#
# broadcast renders these after commit in the process that publishes and carries them in the
# group message; each consumer only picks a variant and checks visibility (`channel_id`) and its
# list's filters against the event's `conversation` state. Nothing here depends on the viewer:
# times are UTC `<time>` elements that inbox.js formats in the browser's zone, an agent's bubble
# names the agent (live.js says "You" in that agent's browser), and a row's unread badge is
# decided by the event (a new inbound message is unread for everyone but the conversation's
# watcher; other updates keep the badge the browser shows).

# channels_redis carries the fragments to every consumer's channel: well under its message size.
MAX_FRAGMENTS_CHARS = 60_000


def message_created_fragments(*, conversation_id: int, message_id: int) -> dict:
    """The bubble, the window banner and the conversation's row for a new message."""
    with timezone.override(UTC):
        message = (
            Message.objects.filter(pk=message_id, conversation_id=conversation_id)
            .select_related("sender", "conversation__contact", "conversation__channel")
            .prefetch_related("attachments")
            .first()
        )
        if message is None:
            return {}
        conversation = message.conversation
        inbound = message.direction == Message.Direction.INBOUND
        fragments = {
            "bubble": _render_shared("inbox/_message.html", message=message, conversation=conversation),
            # The customer wrote: the reply window (re)opens.
            "banner": _window_banner(conversation) if inbound else "",
            **_rows(conversation, unread=True if inbound else None),
        }
        return _within_limit(fragments, state=_state(conversation))


def message_status_fragments(*, conversation_id: int, message_id: int) -> dict:
    """The message's delivery state, replacing `#message-<pk>-status` in place."""
    with timezone.override(UTC):
        message = (
            Message.objects.filter(pk=message_id, conversation_id=conversation_id)
            .select_related("conversation__contact")
            .first()
        )
        if message is None:
            return {}
        status = oob(_render_shared("inbox/_message_status.html", message=message, conversation=message.conversation),
                      "outerHTML")
        return _within_limit({"status": status}, state={})


def conversation_updated_fragments(*, conversation_id: int) -> dict:
    """The conversation's row, replaced in place by every viewer whose list holds it."""
    with timezone.override(UTC):
        conversation = (
            Conversation.objects.filter(pk=conversation_id).select_related("contact", "channel").first()
        )
        if conversation is None:
            return {}
        return _within_limit(_rows(conversation, unread=None), state=_state(conversation))


def row_in_list(state: dict, *, channel_id: int, filters: ListFilters, user_id: int) -> bool:
    """Whether the conversation (as the event describes it) belongs in the viewer's list."""
    if filters.status and state.get("status") != filters.status:
        return False
    if filters.channel_id and channel_id != filters.channel_id:
        return False
    if filters.assignee == "me":
        return state.get("assignee_id") == user_id
    if filters.assignee == "unassigned":
        return state.get("assignee_id") is None
    return True


def resync_hint(fragment: str) -> str:
    """Ask the browser to fetch one fragment again (live.js): the event's HTML was too large."""
    return f'<div hx-swap-oob="beforeend:#live"><span data-resync="{fragment}"></span></div>'


def _state(conversation: Conversation) -> dict:
    return {"status": conversation.status, "assignee_id": conversation.assignee_id}


def _rows(conversation: Conversation, *, unread: bool | None) -> dict:
    """`row` for the organization (unread: True → badge; None → the browser keeps its badge) and
    `row_active` for the socket watching the conversation (read as it arrives: no badge)."""
    conversation.has_unread = bool(unread)
    row = _render_shared("inbox/_conversation_row.html", conversation=conversation, keep_state=unread is None)
    conversation.has_unread = False
    active = _render_shared("inbox/_conversation_row.html", conversation=conversation, active_id=conversation.pk)
    return {"row": row.strip(), "row_active": active.strip()}


def _within_limit(fragments: dict, *, state: dict) -> dict:
    """Strings only (msgpack). Too large: leave the bubble out, then everything; consumers then
    send a hint and the browser fetches that fragment itself."""
    if sum(map(len, fragments.values())) > MAX_FRAGMENTS_CHARS:
        fragments.pop("bubble", None)
    if sum(map(len, fragments.values())) > MAX_FRAGMENTS_CHARS:
        fragments = {}
    return {"fragments": fragments, "conversation": state}


def _window_banner(conversation: Conversation) -> str:
    kind = catalog.kind_of(conversation.channel.kind)
    if kind is None or kind.policy.reply_window is None:
        return ""
    window = kind.policy.window(conversation.last_inbound_at)
    return oob(render_to_string("inbox/_window_banner.html", {"window": window, "conversation": conversation}), "outerHTML")


def _render_shared(template: str, **context) -> str:
    # No viewer, no membership: the same HTML for every agent of the organization.
    return render_to_string(template, {**context, "viewer": None, "browser_time": True})


def oob(html: str, swap: str) -> str:
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
