"""The agent inbox: one page (conversation list, open conversation, contact) and its htmx
fragments, plus the "New message" flow (channel choice, then contact + conversation).

Views parse input, call selectors and services, and render. A full request renders the page;
an htmx request renders only the partial its target names, or a response template
(`inbox/_*_response.html`) that includes the partial and the out-of-band elements beside it.
"""

import json
import uuid
from urllib.parse import urlencode

from django.db.models import Q
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import reswap, retarget, trigger_client_event

from apps.accounts import selectors as account_selectors
from apps.accounts.decorators import member_required
from apps.contacts import selectors as contact_selectors
from apps.conversations import attachments as attachment_services
from apps.conversations import receipts
from apps.conversations import selectors as conversation_selectors
from apps.conversations import sending
from apps.conversations import services as conversation_services
from apps.conversations.models import Conversation
from apps.core.errors import NotFound, ServiceError
from apps.core.pagination import paginate
from apps.inbox.forms import AssignForm, ListFilterForm, ListFilters, SendForm, StatusForm
from apps.providers import selectors as channel_selectors
from apps.providers import services as provider_services
from apps.providers import catalog
from apps.providers.kinds.email import html as email_html

LIST_PAGE = 50
MESSAGE_PAGE = 50


# Inbox ---------------------------------------------------------------------------------------


@member_required
@require_GET
def index(request, conversation_id=None):
    membership = request.membership
    filters = ListFilterForm(request.GET).filters()
    conversation = None
    if conversation_id is not None:
        conversation = conversation_selectors.conversation_get(membership=membership, conversation_id=conversation_id)
        conversation_services.conversation_mark_read(conversation=conversation, user=request.user)
        receipts.conversation_opened(conversation=conversation)
        conversation.has_unread = False
    target = request.htmx.target if request.htmx and not request.htmx.boosted else None

    if target == "workspace":
        context = {
            **_workspace_context(request, conversation, filters),
            "filters": filters,
            "ws_url": _ws_url(conversation, filters),
        }
        return render(request, "inbox/_workspace_response.html", context)

    page = _conversation_page(membership, filters)
    query = filters.query()
    context = {
        "filters": filters,
        "page": page,
        "conversations": page.items,
        "active_id": conversation.pk if conversation else None,
        "query": query,
        "more_url": _more_url(filters, page.next),
    }
    if target == "list-more":
        return render(request, "inbox/index.html#conversation-rows", context)
    if target == "conversation-list":
        return render(request, "inbox/index.html#conversation-list", context)
    context["channels"] = list(channel_selectors.channel_list_visible(membership=membership))
    # Each view keeps the list's other filters; "all" is named so it leaves "mine" for good.
    context["views"] = [
        (key, label, ListFilters(view=key, channel=filters.channel, status=filters.status).query(view=key))
        for key, label in (("mine", "Mine"), ("unassigned", "Unassigned"), ("all", "All"))
    ]
    context["statuses"] = Conversation.Status.choices
    context["ws_url"] = _ws_url(conversation, filters)
    if target == "list-pane":
        return render(request, "inbox/_list_pane_response.html", context)
    context.update(_workspace_context(request, conversation, filters))
    return render(request, "inbox/index.html", context)


@member_required
@require_GET
def message_older(request, conversation_id):
    conversation = conversation_selectors.conversation_get(membership=request.membership, conversation_id=conversation_id)
    before = request.GET.get("before", "")
    anchor = (
        conversation_selectors.message_list(conversation=conversation).filter(pk=before).first()
        if before.isdigit()
        else None
    )
    if anchor is None:
        raise Http404("Message not found.")
    messages, older_than = _message_page(conversation, before=anchor)
    context = {"conversation": conversation, "thread": messages, "older_than": older_than, "viewer": request.user}
    return render(request, "inbox/_older.html", context)


@member_required
@require_POST
def conversation_send(request, conversation_id):
    conversation = conversation_selectors.conversation_get(membership=request.membership, conversation_id=conversation_id)
    return _send(request, channel=conversation.channel, contact=conversation.contact, conversation=conversation)


@member_required
@require_POST
def conversation_typing(request, conversation_id):
    """The agent is typing (inbox.js, debounced); the customer's app may show it."""
    conversation = conversation_selectors.conversation_get(membership=request.membership, conversation_id=conversation_id)
    receipts.conversation_typing(conversation=conversation)
    return HttpResponse(status=204)


@member_required
@require_POST
def conversation_assign(request, conversation_id):
    membership = request.membership
    conversation = conversation_selectors.conversation_get(membership=membership, conversation_id=conversation_id)
    form = AssignForm(request.POST)
    form.is_valid()
    value = form.cleaned_data.get("assignee", "")
    assignee = None
    if value == "me":
        assignee = request.user
    elif value:
        member = (
            account_selectors.member_list(organization=request.organization).filter(user_id=value).first()
            if value.isdigit()
            else None
        )
        if member is None:
            raise Http404("Member not found.")
        assignee = member.user
    try:
        conversation_services.conversation_assign(conversation=conversation, assignee=assignee, membership=membership)
    except ServiceError as exc:
        return _header_response(request, conversation, error=exc)
    return _header_response(request, conversation)


@member_required
@require_POST
def conversation_status(request, conversation_id):
    conversation = conversation_selectors.conversation_get(membership=request.membership, conversation_id=conversation_id)
    form = StatusForm(request.POST)
    try:
        if not form.is_valid():
            raise ServiceError("invalid_status", "Choose open, pending, snoozed or resolved.")
        conversation_services.conversation_set_status(conversation=conversation, status=form.cleaned_data["status"])
    except ServiceError as exc:
        conversation.refresh_from_db(fields=["status"])
        return _header_response(request, conversation, error=exc)
    return _header_response(request, conversation)


@member_required
@require_POST
def message_retry(request, message_id):
    membership = request.membership
    message = conversation_selectors.message_get(membership=membership, message_id=message_id)
    conversation = conversation_selectors.conversation_get(membership=membership, conversation_id=message.conversation_id)
    try:
        message = sending.message_retry(membership=membership, message_id=message.pk)
    except ServiceError as exc:
        if isinstance(exc, NotFound):
            raise
        response = HttpResponse(status=204)
        return _toast(response, exc.message)
    if not request.htmx:
        return redirect("inbox:conversation", conversation_id=conversation.pk)
    prefetch_related_objects([message], "attachments", "sender")
    return render(request, "inbox/_message.html", {"message": message, "conversation": conversation, "viewer": request.user})


@member_required
@require_POST
def attachment_create(request):
    membership = request.membership
    channel_id = request.POST.get("channel", "")
    channel = channel_selectors.channel_get(membership=membership, channel_id=channel_id if channel_id.isdigit() else 0)
    policy = _policy(channel)
    uploaded = request.FILES.get("file")
    try:
        if uploaded is None:
            raise ServiceError("no_file", "Choose a file to upload.")
        attachment = attachment_services.attachment_upload(membership=membership, uploaded_file=uploaded, policy=policy)
    except ServiceError as exc:
        if isinstance(exc, NotFound):
            raise
        response = render(
            request, "inbox/_chip_error.html", {"message": exc.message, "filename": getattr(uploaded, "name", "")}, status=422
        )
        return _toast(response, exc.message)
    return render(request, "inbox/_chip.html", {"attachment": attachment})


EMAIL_FRAME_POLICY = (
    "default-src 'none'; img-src 'self' {origin} data:{remote}; style-src 'unsafe-inline'; font-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
)


@member_required
@require_GET
@xframe_options_sameorigin
def message_email(request, message_id):
    """An email's HTML, sanitized again as it is served, inside the thread's sandboxed frame: no
    scripts, no forms, nothing from elsewhere but (when the agent asks, `?images=1`) images.
    Its inline images are our copies, at signed paths (the frame's requests carry no session)."""
    message = conversation_selectors.message_get(membership=request.membership, message_id=message_id)
    details = message.details or {}
    remote = request.GET.get("images") == "1"
    images = {
        attachment.source_url[4:]: attachment_services.attachment_public_path(attachment)
        for attachment in message.attachments.all()
        if attachment.source_url.startswith("cid:")
    }
    if details.get("html"):
        body = email_html.sanitize(details["html"], images=images, remote_images=remote)
    else:
        body = f"<pre>{escape(details.get('full_text') or message.text)}</pre>"
    response = render(request, "inbox/email_frame.html", {"body": body})
    origin = request.build_absolute_uri("/").rstrip("/")
    response["Content-Security-Policy"] = EMAIL_FRAME_POLICY.format(origin=origin, remote=" https: http:" if remote else "")
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return response


@member_required
@require_GET
def contact_detail(request, contact_id):
    contact = contact_selectors.contact_get(organization=request.organization, contact_id=contact_id)
    return render(request, "inbox/contact.html", {"contact": contact})


# New message ---------------------------------------------------------------------------------


@member_required
@require_GET
def new_message(request):
    """Channel choice: every channel family the organization has, and always WhatsApp, Email and
    Telegram (disabled with a sentence when not configured)."""
    channels = list(channel_selectors.channel_list_visible(membership=request.membership))
    options = []
    for family in catalog.families():
        members = [c for c in channels if catalog.family_of(c.kind) == family]
        if not members and not family.always_listed:
            continue
        not_configured = f"{family.label} is not configured for this organization."
        entries = []
        for channel in members:
            ready, sentence = provider_services.channel_readiness(channel)
            entries.append({"channel": channel, "ready": ready, "sentence": "" if ready else not_configured,
                            "detail": "" if ready else sentence})
        ready = any(entry["ready"] for entry in entries)
        options.append({"family": family.key, "label": family.label, "entries": entries, "ready": ready,
                        "sentence": "" if ready else not_configured})
    return render(request, "inbox/new.html", {"options": options})


@member_required
@require_GET
def new_split(request, channel_id):
    """Left: the contacts this channel may message (searchable); right: the chosen contact's
    conversation on the channel and the composer."""
    membership = request.membership
    channel = channel_selectors.channel_get(membership=membership, channel_id=channel_id)
    policy = _policy(channel)
    query = request.GET.get("q", "").strip()[:100]
    contact_id = request.GET.get("contact", "")
    contacts = list(
        contact_selectors.contact_eligible_list(organization=request.organization, policy=policy, search=query)[:50]
    )
    any_eligible = bool(contacts) or (
        bool(query)
        and contact_selectors.contact_eligible_list(organization=request.organization, policy=policy).exists()
    )
    context = {
        "channel": channel,
        "policy": policy,
        "query": query,
        "contacts": contacts,
        "any_eligible": any_eligible,
        "selected": None,
    }
    target = request.htmx.target if request.htmx and not request.htmx.boosted else None
    if target == "contact-results":
        context["selected_id"] = int(contact_id) if contact_id.isdigit() else None
        return render(request, "inbox/new_split.html#contact-results", context)
    ready, sentence = provider_services.channel_readiness(channel)
    context.update({"ready": ready, "not_ready_sentence": f"{policy.label} is not configured for this organization."})
    conversation = None
    if contact_id:
        selected = contact_selectors.contact_get(
            organization=request.organization, contact_id=contact_id if contact_id.isdigit() else 0
        )
        context["selected"] = selected
        context["selected_id"] = selected.pk
        conversation = _contact_conversation(membership, channel, selected)
        context.update(_thread_context(request, conversation, policy))
    context["conversation"] = conversation
    context["composer"] = _composer_context(
        action=reverse("inbox:new-send", args=[channel.pk]), channel=channel, policy=policy,
        contact=context["selected"], disabled=not ready, disabled_reason=context["not_ready_sentence"],
    )
    context["ws_url"] = _ws_url(conversation, ListFilters())
    if target == "thread-pane":
        return render(request, "inbox/_thread_pane_response.html", context)
    return render(request, "inbox/new_split.html", context)


@member_required
@require_POST
def new_send(request, channel_id):
    membership = request.membership
    channel = channel_selectors.channel_get(membership=membership, channel_id=channel_id)
    contact_id = request.POST.get("contact", "")
    contact = contact_selectors.contact_get(
        organization=request.organization, contact_id=contact_id if contact_id.isdigit() else 0
    )
    conversation = _contact_conversation(membership, channel, contact)
    return _send(request, channel=channel, contact=contact, conversation=conversation, from_new=True)


# Helpers -------------------------------------------------------------------------------------


def _policy(channel):
    return sending.policy_of(channel)


def _conversation_page(membership, filters):
    conversations = conversation_selectors.conversation_list(
        membership=membership,
        status=filters.status,
        channel_id=filters.channel,
        assignee=filters.assignee,
    )
    try:
        return paginate(
            conversations, field="last_message_at", descending=True, token=filters.cursor or None, limit=LIST_PAGE
        )
    except ServiceError:
        return paginate(conversations, field="last_message_at", descending=True, token=None, limit=LIST_PAGE)


def _message_page(conversation, *, before=None):
    """The newest page of messages (oldest first), before `before` when given, and the id to
    load older ones from (None at the start of the conversation)."""
    messages = conversation_selectors.message_list(conversation=conversation)
    if before is not None:
        messages = messages.filter(
            Q(created_at__lt=before.created_at) | Q(created_at=before.created_at, pk__lt=before.pk)
        )
    rows = list(messages.order_by("-created_at", "-pk")[: MESSAGE_PAGE + 1])
    more = len(rows) > MESSAGE_PAGE
    rows = rows[:MESSAGE_PAGE]
    rows.reverse()
    return rows, (rows[0].pk if more and rows else None)


def _contact_conversation(membership, channel, contact):
    """The contact's conversation on this channel: the open one, else the latest."""
    return conversation_selectors.conversation_current(
        contact=contact, channel=channel, within=conversation_selectors.conversation_list(membership=membership)
    )


def _thread_context(request, conversation, policy) -> dict:
    window = policy.window(conversation.last_inbound_at if conversation else None) if policy.reply_window else None
    if conversation is None:
        return {"thread": [], "older_than": None, "window": window, "viewer": request.user}
    messages, older_than = _message_page(conversation)
    return {"thread": messages, "older_than": older_than, "window": window, "viewer": request.user}


def _workspace_context(request, conversation, filters) -> dict:
    if conversation is None:
        return {"conversation": None}
    policy = _policy(conversation.channel)
    # The contact panel shows their consents: one query for all of them.
    prefetch_related_objects([conversation.contact], "consents")
    context = {
        "conversation": conversation,
        "contact": conversation.contact,
        "policy": policy,
        "members": list(account_selectors.member_list(organization=request.organization)),
        "statuses": Conversation.Status.choices,
        "back_url": reverse("inbox:index") + filters.query(),
        **_thread_context(request, conversation, policy),
    }
    context["composer"] = _composer_context(
        action=reverse("inbox:send", args=[conversation.pk]), channel=conversation.channel, policy=policy,
        contact=conversation.contact, conversation=conversation,
    )
    return context


def _composer_context(*, action, channel, policy, contact, text="", attachments=(), error="", disabled=False,
                      disabled_reason="", conversation=None, subject="", buttons=()) -> dict:
    kind = catalog.kind_of(channel.kind)
    buttons = list(buttons)[: policy.max_buttons]
    return {
        # Email: a subject field (a new email needs one; a reply keeps the conversation's).
        "threads": bool(kind and kind.capabilities.threads),
        "subject": subject,
        "reply_subject": conversation.subject if conversation is not None else "",
        "action": action,
        "channel": channel,
        "policy": policy,
        "contact": contact,
        "text": text,
        "buttons": [label for label in buttons if label],
        # One input per button the channel allows, holding what the agent typed (a refused send).
        "button_slots": buttons + [""] * (policy.max_buttons - len(buttons)),
        "attachments": list(attachments),
        "error": error,
        "client_token": uuid.uuid4().hex,
        "disabled": disabled or contact is None,
        "disabled_reason": disabled_reason if disabled else "",
        "accept": ",".join(policy.accepted_types),
        "limits_json": json.dumps({t: limit for types, limit in policy.media.values() for t in types}),
    }


def _send(request, *, channel, contact, conversation, from_new=False):
    membership = request.membership
    form = SendForm(request.POST)
    form.is_valid()
    data = form.cleaned_data
    text = data.get("text", "")
    subject = data.get("subject", "")
    buttons = tuple(data.get("buttons") or ())
    attachment_ids = tuple(data.get("attachment_ids") or ())
    token = data.get("client_token") or None
    action = reverse("inbox:new-send", args=[channel.pk]) if from_new else reverse("inbox:send", args=[conversation.pk])
    policy = _policy(channel)
    try:
        if from_new:
            message = sending.message_send(
                membership=membership, channel=channel, contact_id=contact.pk, text=text, subject=subject,
                attachment_ids=attachment_ids, client_token=token, interactive=True, buttons=buttons,
            )
        else:
            message = sending.message_send(
                membership=membership, conversation=conversation, text=text, subject=subject,
                attachment_ids=attachment_ids, client_token=token, interactive=True, buttons=buttons,
            )
    except ServiceError as exc:
        if isinstance(exc, NotFound):
            raise
        composer = _composer_context(
            action=action, channel=channel, policy=policy, contact=contact, text=text,
            attachments=_kept_attachments(request, attachment_ids), error=exc.message,
            conversation=None if from_new else conversation, subject=subject, buttons=buttons,
        )
        composer["client_token"] = token or composer["client_token"]
        response = render(request, "inbox/_composer.html", {"composer": composer}, status=422)
        response = retarget(response, "#composer")
        response = reswap(response, "outerHTML")
        return _toast(response, exc.message)

    if not request.htmx:
        if from_new:
            return redirect(reverse("inbox:new-split", args=[channel.pk]) + "?" + urlencode({"contact": contact.pk}))
        return redirect("inbox:conversation", conversation_id=message.conversation_id)

    # With an eager worker (the embedded default) delivery already ran: show where it stands.
    message.refresh_from_db(fields=["status", "error_code", "error_reason", "external_id"])
    new_conversation = conversation is None or conversation.pk != message.conversation_id
    if new_conversation:
        conversation = conversation_selectors.conversation_get(
            membership=membership, conversation_id=message.conversation_id
        )
    prefetch_related_objects([message], "attachments", "sender")
    composer = _composer_context(action=action, channel=channel, policy=policy, contact=contact,
                                 conversation=None if from_new else conversation)
    context = {"message": message, "conversation": conversation, "viewer": request.user, "composer": composer}
    if new_conversation:
        # The first message of a conversation: watch it from now on.
        context["ws_url"] = _ws_url(conversation, ListFilters())
    response = render(request, "inbox/_send_response.html", context)
    if message.status == message.Status.FAILED:
        return _toast(response, message.error_reason or f"Failed to send via {policy.label}.")
    return response


def _kept_attachments(request, attachment_ids):
    """The chips of a refused send, so nothing the agent attached is lost (at most a few)."""
    kept = []
    for attachment_id in dict.fromkeys(attachment_ids):
        try:
            attachment = attachment_services.attachment_get(membership=request.membership, attachment_id=attachment_id)
        except NotFound:
            continue
        if attachment.message_id is None:
            kept.append(attachment)
    return kept


def _header_response(request, conversation, *, error: ServiceError | None = None):
    if not request.htmx:
        return redirect("inbox:conversation", conversation_id=conversation.pk)
    conversation = conversation_selectors.conversation_get(membership=request.membership, conversation_id=conversation.pk)
    conversation.has_unread = False
    context = {
        "conversation": conversation,
        "members": list(account_selectors.member_list(organization=request.organization)),
        "statuses": Conversation.Status.choices,
        "viewer": request.user,
    }
    response = render(request, "inbox/_header_response.html", context, status=422 if error else 200)
    if error:
        return _toast(response, error.message)
    return response


def _toast(response, message: str, level: str = "error"):
    return trigger_client_event(response, "toast", {"message": message, "level": level})


def _more_url(filters: ListFilters, cursor) -> str | None:
    return reverse("inbox:index") + filters.query(cursor=cursor) if cursor else None


def _ws_url(conversation, filters: ListFilters) -> str:
    """The page's socket: the conversation it watches and the list it shows."""
    params = {"conversation": conversation.pk, **filters.params()} if conversation else filters.params()
    return "/ws/inbox/" + ("?" + urlencode(params) if params else "")
