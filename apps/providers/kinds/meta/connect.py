"""Connecting an organization to Meta: Facebook Login for a Page (Messenger and its linked
Instagram account), WhatsApp Cloud numbers, disconnecting, and what a dead token means.

Tokens are write-only: they live in encrypted columns (`Channel.secrets`,
`MetaPendingConnection.secrets`) and are never returned, logged or rendered.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Membership
from apps.core.errors import NotFound, ServiceError
from apps.providers import services as channel_services
from apps.providers.kinds.base import CONFIGURATION, RATE_LIMITED
from apps.providers.kinds.meta import graph as meta_graph
from apps.providers.kinds.meta.adapter import classify
from apps.providers.kinds.meta.graph import GraphError, GraphUnreachable
from apps.providers.models import Channel, MetaAppConfig, MetaOAuthState, MetaPendingConnection

log = logging.getLogger(__name__)

STATE_SALT = "parley.meta.oauth-state"
STATE_MAX_AGE = timedelta(minutes=10)
PENDING_MAX_AGE = timedelta(minutes=30)
PAGE_KINDS = ("messenger", "instagram")
META_KINDS = (*PAGE_KINDS, "meta_whatsapp")

TOKEN_PROBLEM_REASON = (
    "The Facebook connection expired or lost a permission. "
    "An admin must reconnect the page in Settings → Integrations."
)
WHATSAPP_TOKEN_PROBLEM_REASON = (
    "The WhatsApp Cloud access token expired or lost a permission. "
    "An admin must enter a new token in Settings → Integrations."
)
UNREACHABLE = "Meta could not be reached. Nothing was changed; try again in a minute."


def _require_admin(membership: Membership) -> None:
    if not membership.is_admin:
        raise ServiceError("forbidden", "Only owners and admins can manage integrations.", status=403)


def _app() -> MetaAppConfig:
    app = MetaAppConfig.current()
    if not app.is_configured:
        raise ServiceError(
            "meta_not_configured",
            "The Meta app is not set up yet. A superuser must fill in the Meta app configuration in Django admin.",
        )
    return app


def meta_redirect_uri() -> str:
    """The OAuth callback Meta sends the admin back to (registered in the Meta app)."""
    return settings.PUBLIC_BASE_URL + reverse("settings:meta-callback")


def _nonce_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def _graph_refusal(error: GraphError, *, action: str) -> ServiceError:
    """A Graph error during connect, as a sentence the admin can act on (never the token)."""
    log.warning("Meta %s failed: code=%s subcode=%s fbtrace_id=%s", action, error.code, error.subcode, error.fbtrace_id)
    effect = classify(error, kind="messenger").effect
    if effect == CONFIGURATION:
        return ServiceError(
            "meta_permission",
            "Facebook refused the connection: the login expired or a permission was not granted. "
            "Connect again and allow every permission Parley asks for.",
        )
    if effect == RATE_LIMITED:
        return ServiceError("meta_rate_limited", "Facebook is rate limiting this app. Try again in a few minutes.")
    return ServiceError("meta_error", f"Facebook refused the request: {error.message}")


# --------------------------------------------------------------------------- Facebook Login


@transaction.atomic
def meta_oauth_start(*, membership: Membership) -> str:
    """The URL of Facebook Login's dialog, with a signed, single-use `state` bound to this membership."""
    _require_admin(membership)
    app = _app()
    nonce = secrets.token_urlsafe(32)
    now = timezone.now()
    MetaOAuthState.objects.filter(expires_at__lt=now).delete()
    MetaOAuthState.objects.create(membership=membership, nonce_hash=_nonce_hash(nonce), expires_at=now + STATE_MAX_AGE)
    state = signing.dumps({"m": membership.pk, "n": nonce}, salt=STATE_SALT, compress=True)
    return meta_graph.oauth_dialog_url(
        app_id=app.app_id, redirect_uri=meta_redirect_uri(), state=state, version=app.graph_version
    )


def _state_consume(*, membership: Membership, state: str) -> None:
    refused = ServiceError(
        "invalid_state", "This Facebook login link is not valid any more. Start again from Settings → Integrations."
    )
    try:
        data = signing.loads(state or "", salt=STATE_SALT, max_age=STATE_MAX_AGE)
        membership_id, nonce = int(data["m"]), str(data["n"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise refused from None
    if membership_id != membership.pk:
        raise refused
    # Single use even when the callback is replayed concurrently: one UPDATE wins.
    used = MetaOAuthState.objects.filter(
        nonce_hash=_nonce_hash(nonce), membership=membership, used_at__isnull=True, expires_at__gte=timezone.now()
    ).update(used_at=timezone.now())
    if used != 1:
        raise refused


def meta_oauth_complete(*, membership: Membership, code: str, state: str) -> MetaPendingConnection:
    """The dialog's callback: check `state`, exchange the code for a long-lived user token and
    list the admin's pages. The tokens wait, encrypted, for the admin to pick a page."""
    _require_admin(membership)
    _state_consume(membership=membership, state=state)
    app = _app()
    if not code:
        raise ServiceError("meta_no_code", "Facebook did not send a login code. Start again.")
    version = app.graph_version
    try:
        short = meta_graph.oauth_exchange_code(
            app_id=app.app_id, app_secret=app.app_secret, redirect_uri=meta_redirect_uri(), code=code, version=version
        )
        user_token = meta_graph.oauth_long_lived_token(
            app_id=app.app_id, app_secret=app.app_secret, user_token=short, version=version
        )
        pages = meta_graph.me_accounts(user_token=user_token, version=version)
    except GraphError as error:
        raise _graph_refusal(error, action="login") from None
    except GraphUnreachable:
        raise ServiceError("meta_unreachable", UNREACHABLE) from None
    if not pages:
        raise ServiceError(
            "meta_no_pages",
            "Your Facebook account did not share any Page with Parley. Connect again and select the Page to use.",
        )
    MetaPendingConnection.objects.filter(expires_at__lt=timezone.now()).delete()
    return MetaPendingConnection.objects.create(
        organization_id=membership.organization_id,
        membership=membership,
        secrets={"user_token": user_token, "page_tokens": {p["id"]: p["access_token"] for p in pages}},
        pages=[{k: p[k] for k in ("id", "name", "instagram_account_id", "instagram_username")} for p in pages],
        expires_at=timezone.now() + PENDING_MAX_AGE,
    )


def meta_pending_get(*, membership: Membership, pending_uuid) -> MetaPendingConnection:
    """A pending connection of this organization that has not expired (else 404)."""
    pending = MetaPendingConnection.objects.filter(
        uuid=pending_uuid, organization_id=membership.organization_id, expires_at__gte=timezone.now()
    ).first()
    if pending is None:
        raise NotFound("This Facebook login has expired. Start again from Settings → Integrations.")
    return pending


def _address_taken(*, organization_id: int, kind: str, address: str) -> bool:
    # Webhooks route by address: one organization per page, Instagram account or number.
    return (
        Channel.objects.filter(kind=kind, address=address)
        .exclude(organization_id=organization_id)
        .exclude(status=Channel.Status.DISABLED)
        .exists()
    )


def _channel_upsert(*, organization_id: int, kind: str, address: str, name: str, config: dict, secrets: dict) -> Channel:
    channel = (
        Channel.objects.select_for_update()
        .filter(organization_id=organization_id, kind=kind, address=address)
        .order_by("pk")
        .first()
    )
    if channel is None:
        channel = Channel(organization_id=organization_id, kind=kind, address=address, name=name[:100])
    channel.config = {**channel.config, **config}
    channel.secrets = secrets
    # The switches shown in admin, at their defaults until an admin changes them.
    channel.settings = {**channel_services.SETTING_DEFAULTS, **(channel.settings or {})}
    channel.status, channel.status_reason = Channel.Status.ACTIVE, ""
    channel.save()
    return channel


def meta_page_connect(*, membership: Membership, pending: MetaPendingConnection, page_id: str) -> list[Channel]:
    """Connect the page the admin picked: subscribe the app to its webhooks, then create or
    refresh its Messenger channel (address = page id) and, when linked, its Instagram channel
    (address = Instagram account id). Reconnecting the same page updates those channels."""
    _require_admin(membership)
    if pending.organization_id != membership.organization_id:
        raise NotFound("This Facebook login has expired. Start again from Settings → Integrations.")
    page = next((p for p in pending.pages if p["id"] == page_id), None)
    token = pending.secrets.get("page_tokens", {}).get(page_id)
    if page is None or not token:
        raise ServiceError("meta_unknown_page", "Pick one of the Pages listed.")
    org_id = membership.organization_id
    ig_id = page.get("instagram_account_id") or ""
    if _address_taken(organization_id=org_id, kind="messenger", address=page_id) or (
        ig_id and _address_taken(organization_id=org_id, kind="instagram", address=ig_id)
    ):
        raise ServiceError(
            "meta_page_taken", "This Page is already connected to another Parley organization. Disconnect it there first."
        )
    app = _app()
    try:
        meta_graph.page_subscribe(page_id=page_id, page_token=token, version=app.graph_version)
    except GraphError as error:
        raise _graph_refusal(error, action="page subscription") from None
    except GraphUnreachable:
        raise ServiceError("meta_unreachable", UNREACHABLE) from None

    page_config = {"page_id": page_id, "page_name": page["name"]}
    with transaction.atomic():
        channels = [
            _channel_upsert(
                organization_id=org_id,
                kind="messenger",
                address=page_id,
                name=page["name"] or "Messenger",
                config=page_config,
                secrets={"page_access_token": token},
            )
        ]
        if ig_id:
            username = page.get("instagram_username") or ""
            channels.append(
                _channel_upsert(
                    organization_id=org_id,
                    kind="instagram",
                    address=ig_id,
                    name=f"@{username}" if username else "Instagram",
                    config={**page_config, "instagram_account_id": ig_id, "instagram_username": username},
                    secrets={"page_access_token": token},
                )
            )
        MetaPendingConnection.objects.filter(pk=pending.pk).delete()
    log.info("organization %s connected Facebook page %s (%d channels)", org_id, page_id, len(channels))
    return channels


def meta_page_disconnect(*, membership: Membership, channel: Channel) -> bool:
    """Disconnect a page: unsubscribe the app from its webhooks, wipe the page token from its
    Messenger and Instagram channels and disable them. Returns whether Meta confirmed the
    unsubscription (the local disconnect happens either way: the admin asked for it)."""
    _require_admin(membership)
    if channel.organization_id != membership.organization_id or channel.kind not in PAGE_KINDS:
        raise NotFound("Channel not found.")
    page_id = channel.config.get("page_id") or (channel.address if channel.kind == "messenger" else "")
    siblings = Channel.objects.filter(organization_id=membership.organization_id, kind__in=PAGE_KINDS).filter(
        Q(pk=channel.pk) | Q(config__page_id=page_id) if page_id else Q(pk=channel.pk)
    )
    token = next((c.secrets.get("page_access_token") for c in siblings if c.secrets.get("page_access_token")), None)
    unsubscribed = False
    if page_id and token:
        try:
            meta_graph.page_unsubscribe(page_id=page_id, page_token=token, version=MetaAppConfig.current().graph_version)
            unsubscribed = True
        except GraphError as error:
            log.warning("Meta unsubscribe of page %s failed: code=%s fbtrace_id=%s", page_id, error.code, error.fbtrace_id)
        except GraphUnreachable:
            log.warning("Meta unsubscribe of page %s failed: Graph unreachable", page_id)
    with transaction.atomic():
        for sibling in siblings.select_for_update():
            sibling.secrets = {}
            sibling.status = Channel.Status.DISABLED
            sibling.status_reason = "Disconnected from Facebook."
            sibling.save(update_fields=["secrets", "status", "status_reason", "updated_at"])
    log.info("organization %s disconnected Facebook page %s", membership.organization_id, page_id)
    return unsubscribed


# --------------------------------------------------------------------------- WhatsApp Cloud


def meta_whatsapp_connect(*, membership: Membership, waba_id: str, phone_number_id: str, access_token: str) -> Channel:
    """Connect a WhatsApp Cloud number after Meta confirms the token reaches it. Nothing is
    saved when the check fails. An empty token on an existing number keeps the stored one."""
    _require_admin(membership)
    waba_id, phone_number_id, access_token = (waba_id or "").strip(), (phone_number_id or "").strip(), (access_token or "").strip()
    if not waba_id.isdigit() or not phone_number_id.isdigit():
        raise ServiceError(
            "invalid", "The WhatsApp Business Account id and the phone number id are numbers shown in Meta's WhatsApp Manager."
        )
    org_id = membership.organization_id
    existing = Channel.objects.filter(organization_id=org_id, kind="meta_whatsapp", address=phone_number_id).first()
    if not access_token and existing is not None:
        access_token = existing.secrets.get("access_token", "")
    if not access_token:
        raise ServiceError("invalid", "Enter the system-user access token of your WhatsApp Business Account.")
    if _address_taken(organization_id=org_id, kind="meta_whatsapp", address=phone_number_id):
        raise ServiceError("meta_number_taken", "This phone number is already connected to another Parley organization.")
    app = _app()
    try:
        number = meta_graph.whatsapp_number_get(
            phone_number_id=phone_number_id, access_token=access_token, version=app.graph_version
        )
        meta_graph.whatsapp_waba_subscribe(waba_id=waba_id, access_token=access_token, version=app.graph_version)
    except GraphError as error:
        log.warning("WhatsApp Cloud check failed: code=%s subcode=%s fbtrace_id=%s", error.code, error.subcode, error.fbtrace_id)
        if classify(error, kind="meta_whatsapp").effect == CONFIGURATION:
            raise ServiceError(
                "meta_token_refused",
                "Meta refused this access token. Use a system-user token with the whatsapp_business_messaging and "
                "whatsapp_business_management permissions.",
            ) from None
        if error.code == 100:
            raise ServiceError(
                "meta_number_unknown",
                "Meta does not know this phone number id or WhatsApp Business Account id, or the token cannot reach them.",
            ) from None
        raise ServiceError("meta_error", f"Meta refused the check: {error.message}") from None
    except GraphUnreachable:
        raise ServiceError("meta_unreachable", UNREACHABLE) from None
    if str(number.get("id", phone_number_id)) != phone_number_id:
        raise ServiceError("meta_number_unknown", "Meta answered for a different phone number. Check the phone number id.")
    display = str(number.get("display_phone_number") or "")
    with transaction.atomic():
        channel = _channel_upsert(
            organization_id=org_id,
            kind="meta_whatsapp",
            address=phone_number_id,
            name=f"WhatsApp {display}".strip(),
            config={
                "waba_id": waba_id,
                "phone_number_id": phone_number_id,
                "display_phone_number": display,
                "verified_name": str(number.get("verified_name") or ""),
            },
            secrets={"access_token": access_token},
        )
    log.info("organization %s connected WhatsApp Cloud number %s", org_id, phone_number_id)
    return channel


# --------------------------------------------------------------------------- reads


def integration_channels(*, membership: Membership) -> QuerySet[Channel]:
    """Every channel of the organization, for the integrations page (admins only)."""
    _require_admin(membership)
    return Channel.objects.filter(organization_id=membership.organization_id).order_by("kind", "name", "pk")


def integration_channel_get(*, membership: Membership, channel_id: int) -> Channel:
    channel = integration_channels(membership=membership).filter(pk=channel_id).first()
    if channel is None:
        raise NotFound("Channel not found.")
    return channel
