"""Out-of-band htmx fragments for the inbox socket, rendered once per event for every viewer.

Each part of a frame is one template: the files the pages render (`inbox/_message.html`,
`inbox/_message_status.html`, `inbox/_conversation_row.html`, `inbox/_window_banner.html`),
marked out of band by their `oob` variable or wrapped by an `inbox/_live_*.html` template that
says where they go. Their data is loaded in a fixed number of queries. They are not scoped by
viewer: the event names its organization group and its `channel_id`, and each consumer drops
what its member may not see and joins the parts it picked, as they are.
"""

import functools
from datetime import UTC

from django.template.loader import render_to_string
from django.utils import timezone

from apps.accounts.models import Membership
from apps.conversations import selectors as conversation_selectors
from apps.conversations.models import Conversation, Message
from apps.providers import catalog


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
    """For the socket watching the conversation, `bubble` (appended to the thread, replacing the
    sender's own copy) and `banner` (the reply window); for every list that holds the
    conversation, its row moved to the top: `row`, or `row_active` for the watcher."""
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
            "bubble": _render_shared("inbox/_live_bubble.html", message=message, conversation=conversation),
            # The customer wrote: the reply window (re)opens.
            "banner": _window_banner(conversation) if inbound else "",
            **_rows("inbox/_live_row_moved.html", conversation, unread=True if inbound else None),
        }
        return _within_limit(fragments, state=_state(conversation))


def message_status_fragments(*, conversation_id: int, message_id: int, whole: bool = False) -> dict:
    """The message's delivery state, replacing `#message-<pk>-status` in place; `whole`: the
    message's content changed (an edit, an unsend), so its whole bubble replaces `#message-<pk>`."""
    with timezone.override(UTC):
        messages = Message.objects.filter(pk=message_id, conversation_id=conversation_id)
        if whole:
            messages = messages.select_related("sender", "conversation__contact").prefetch_related("attachments")
        else:
            messages = messages.select_related("conversation__contact")
        message = messages.first()
        if message is None:
            return {}
        if whole:
            status = _render_shared("inbox/_message.html", message=message, conversation=message.conversation,
                                    bubble_oob=True)
        else:
            status = _render_shared(
                "inbox/_message_status.html", message=message, conversation=message.conversation, oob=True
            )
        return _within_limit({"status": status}, state={})


def conversation_updated_fragments(*, conversation_id: int) -> dict:
    """The conversation's row replaced in place, for every list that holds it (`row`, or
    `row_active` for the watcher), and `row_gone` for lists it has left."""
    with timezone.override(UTC):
        conversation = (
            Conversation.objects.filter(pk=conversation_id).select_related("contact", "channel").first()
        )
        if conversation is None:
            return {}
        fragments = {
            **_rows("inbox/_conversation_row.html", conversation, unread=None, oob="outerHTML"),
            "row_gone": _render_shared("inbox/_live_row_gone.html", conversation=conversation),
        }
        return _within_limit(fragments, state=_state(conversation))


def row_in_list(state: dict, *, channel_id: int, filters, user_id: int) -> bool:
    """Whether the conversation (as the event describes it) belongs in the viewer's list."""
    if filters.status and state.get("status") != filters.status:
        return False
    if filters.channel and channel_id != filters.channel:
        return False
    if filters.assignee == "me":
        return state.get("assignee_id") == user_id
    if filters.assignee == "unassigned":
        return state.get("assignee_id") is None
    return True


@functools.cache
def resync_hint(fragment: str) -> str:
    """Ask the browser to fetch one fragment again (live.js): the event's HTML was too large or
    its render failed. The same for every event: rendered once per process and fragment."""
    return render_to_string("inbox/_live_resync.html", {"fragment": fragment}).strip()


def _state(conversation: Conversation) -> dict:
    return {"status": conversation.status, "assignee_id": conversation.assignee_id}


def _rows(template: str, conversation: Conversation, *, unread: bool | None, **context) -> dict:
    """`row` for the organization (unread: True → badge; None → the browser keeps its badge) and
    `row_active` for the socket watching the conversation (read as it arrives: no badge), both
    through `template` (moved to the top, or in place)."""
    conversation.has_unread = bool(unread)
    row = _render_shared(template, conversation=conversation, keep_state=unread is None, **context)
    conversation.has_unread = False
    active = _render_shared(template, conversation=conversation, active_id=conversation.pk, **context)
    return {"row": row, "row_active": active}


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
    return render_to_string(
        "inbox/_window_banner.html", {"window": window, "conversation": conversation, "oob": True}
    ).strip()


def _render_shared(template: str, **context) -> str:
    # No viewer, no membership: the same HTML for every agent of the organization. Stripped of
    # the templates' surrounding whitespace only, so a part is exactly its elements.
    return render_to_string(template, {**context, "viewer": None, "browser_time": True}).strip()


def _as_int(value) -> int:
    return int(value) if str(value).isdigit() else -1
