"""Settings → Integrations: connect a Facebook Page (Messenger and Instagram) through Facebook
Login, connect a WhatsApp Cloud number, see every channel's status, disconnect.

Owners and admins only (agents get 403). Tokens never reach a template: forms are write-only.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.decorators import admin_required
from apps.core.errors import NotFound, ServiceError
from apps.providers.kinds.meta import connect as meta_connect
from apps.providers.models import Channel, MetaAppConfig

INTEGRATIONS = "settings:integrations"


def _page_groups(channels: list[Channel]) -> list[dict]:
    """Messenger and Instagram channels grouped by the page they share."""
    groups: dict[str, dict] = {}
    for channel in channels:
        if channel.kind not in meta_connect.PAGE_KINDS:
            continue
        page_id = channel.config.get("page_id") or channel.address
        group = groups.setdefault(page_id, {"page_id": page_id, "page_name": "", "channels": [], "connected": False})
        group["page_name"] = group["page_name"] or channel.config.get("page_name", "")
        group["channels"].append(channel)
        group["connected"] = group["connected"] or channel.status != Channel.Status.DISABLED
    return list(groups.values())


def _render_integrations(request, *, whatsapp_form=None, status=200):
    channels = list(meta_connect.integration_channels(membership=request.membership))
    for channel in channels:
        # Whether a token is stored, never the token: the template does not see secrets.
        channel.token_state = "set" if channel.secrets else "not set"
        channel.secrets = {}
    context = {
        "meta_ready": MetaAppConfig.current().is_configured,
        "page_groups": _page_groups(channels),
        "cloud_channels": [c for c in channels if c.kind == "meta_whatsapp"],
        "twilio_channels": [c for c in channels if c.kind in ("twilio_whatsapp", "twilio_sms")],
        "whatsapp_form": whatsapp_form or {},
        "is_superuser": request.user.is_superuser,
    }
    return render(request, "settings/integrations.html", context, status=status)


@admin_required
@require_GET
def integrations(request):
    return _render_integrations(request)


@admin_required
@require_POST
def meta_connect_start(request):
    try:
        url = meta_connect.meta_oauth_start(membership=request.membership)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(INTEGRATIONS)
    return redirect(url)


@admin_required
@require_GET
def meta_callback(request):
    if request.GET.get("error"):
        messages.error(request, "Facebook login was cancelled; nothing was connected.")
        return redirect(INTEGRATIONS)
    try:
        pending = meta_connect.meta_oauth_complete(
            membership=request.membership, code=request.GET.get("code", ""), state=request.GET.get("state", "")
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(INTEGRATIONS)
    return redirect("settings:meta-pages", pending_uuid=pending.uuid)


@admin_required
@require_http_methods(["GET", "POST"])
def meta_pages(request, pending_uuid):
    pending = meta_connect.meta_pending_get(membership=request.membership, pending_uuid=pending_uuid)
    error = ""
    if request.method == "POST":
        try:
            channels = meta_connect.meta_page_connect(
                membership=request.membership, pending=pending, page_id=request.POST.get("page_id", "")
            )
        except ServiceError as exc:
            error = exc.message
        else:
            names = " and ".join(f"{c.get_kind_display()} ({c.name})" for c in channels)
            messages.success(request, f"Connected {names}.")
            return redirect(INTEGRATIONS)
    return render(
        request, "settings/meta_pages.html", {"pending": pending, "pages": pending.pages, "error": error},
        status=422 if error else 200,
    )


@admin_required
@require_POST
def meta_disconnect(request, channel_id):
    channel = meta_connect.integration_channel_get(membership=request.membership, channel_id=channel_id)
    try:
        confirmed = meta_connect.meta_page_disconnect(membership=request.membership, channel=channel)
    except NotFound:
        raise
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(INTEGRATIONS)
    if confirmed:
        messages.success(request, "Disconnected the Facebook Page; its tokens were deleted.")
    else:
        messages.warning(
            request,
            "Disconnected the Facebook Page and deleted its tokens. Facebook did not confirm removing the webhook "
            "subscription; remove Parley from the Page's settings on Facebook if it still appears.",
        )
    return redirect(INTEGRATIONS)


@admin_required
@require_POST
def whatsapp_cloud_connect(request):
    form = {"waba_id": request.POST.get("waba_id", "").strip(), "phone_number_id": request.POST.get("phone_number_id", "").strip()}
    try:
        channel = meta_connect.meta_whatsapp_connect(
            membership=request.membership,
            waba_id=form["waba_id"],
            phone_number_id=form["phone_number_id"],
            access_token=request.POST.get("access_token", ""),
        )
    except ServiceError as exc:
        return _render_integrations(request, whatsapp_form={**form, "error": exc.message}, status=422)
    messages.success(request, f"Connected {channel.name}.")
    return redirect(reverse(INTEGRATIONS) + "#whatsapp-cloud")
