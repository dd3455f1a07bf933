"""Meta's channels through one Meta app: Facebook Messenger, Instagram DM and the WhatsApp Cloud
API. The Graph client (`graph`), the adapters and the one classifier of Graph errors (`adapter`),
the app-level webhook (`webhook`), and connecting pages and numbers (`connect`, `views`)."""

from datetime import timedelta

from django.urls import path

from apps.providers.kinds import whatsapp
from apps.providers.kinds.base import MB, Capabilities, ChannelKind, ChannelPolicy, Credential, Family, Webhook
from apps.providers.kinds.meta import adapter, connect, views, webhook

MEDIA_TYPES = {
    "image": frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}),
    "video": frozenset({"video/mp4", "video/quicktime", "video/webm", "video/3gpp"}),
    "audio": frozenset({"audio/mpeg", "audio/mp4", "audio/aac", "audio/ogg", "audio/wav", "audio/x-wav"}),
    "document": frozenset(
        {
            "application/pdf",
            "text/plain",
            "application/msword",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.ms-excel",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/zip",
        }
    ),
}


def _page_policy(label: str, identity_kind: str, *, text_limit: int, image_max: int, other_max: int) -> ChannelPolicy:
    """Messenger and Instagram: 24 hours of free replies, then `HUMAN_AGENT` replies up to 7 days."""
    return ChannelPolicy(
        label=label,
        identity_kind=identity_kind,
        needs_phone=False,
        needs_opt_in=False,
        reply_window=timedelta(hours=24),
        window_warning=f"This contact hasn't messaged you for more than 7 days; {label} allows no reply until they write again.",
        text_limit=text_limit,
        media={
            category: (types, image_max if category == "image" else other_max) for category, types in MEDIA_TYPES.items()
        },
        extended_window=timedelta(days=7),
        extended_window_tag="HUMAN_AGENT",
        extended_window_note=(
            f"More than 24 hours since this contact's last message: replies go out as {label} human agent "
            "replies, allowed until 7 days after it."
        ),
        window_closed=f"Failed to send via {label}: the 7-day window for human agent replies has closed.",
    )


MESSENGER_FAMILY = Family(
    key="messenger",
    label="Messenger",
    order=50,
    icon=(
        "M12 2C6.4 2 2 6.1 2 11.3c0 2.9 1.4 5.5 3.7 7.2V22l3.4-1.9c.9.3 1.9.4 2.9.4 5.6 0 10-4.1 10-9.3S17.6 2 12 2Zm1 "
        "12.5-2.6-2.7-5 2.7 5.5-5.8 2.6 2.7 5-2.7-5.5 5.8Z"
    ),
)
INSTAGRAM_FAMILY = Family(
    key="instagram",
    label="Instagram",
    order=60,
    icon=(
        "M7 2h10a5 5 0 0 1 5 5v10a5 5 0 0 1-5 5H7a5 5 0 0 1-5-5V7a5 5 0 0 1 5-5Zm0 2a3 3 0 0 0-3 3v10a3 3 0 0 0 3 3h10"
        "a3 3 0 0 0 3-3V7a3 3 0 0 0-3-3H7Zm5 3.5a4.5 4.5 0 1 1 0 9 4.5 4.5 0 0 1 0-9Zm0 2a2.5 2.5 0 1 0 0 5 2.5 2.5 0 0"
        " 0 0-5ZM17.3 5.5a1.2 1.2 0 1 1 0 2.4 1.2 1.2 0 0 1 0-2.4Z"
    ),
)

# The app-level webhook (all three kinds) and the connect flow in Settings → Integrations.
WEBHOOKS = (Webhook(hook="meta", name="inbound", app_level=True),)
WEBHOOK_URLS = (path("meta/", webhook.meta_webhook, name="meta"),)
SETTINGS_URLS = (
    path("integrations/", views.integrations, name="integrations"),
    path("integrations/meta/connect/", views.meta_connect_start, name="meta-connect"),
    path("integrations/meta/callback/", views.meta_callback, name="meta-callback"),
    path("integrations/meta/pages/<uuid:pending_uuid>/", views.meta_pages, name="meta-pages"),
    path("integrations/channels/<int:channel_id>/disconnect/", views.meta_disconnect, name="meta-disconnect"),
    path("integrations/whatsapp-cloud/", views.whatsapp_cloud_connect, name="whatsapp-cloud"),
)

PAGE_CREDENTIALS = (
    Credential("page_id", "Facebook Page id", help="Set when the page is connected in Settings → Integrations."),
    Credential("page_access_token", "Page access token", secret=True),
)
PAGE_CAPABILITIES = Capabilities(read_receipts=True, typing=True, reactions=True, profiles=True)

def _page_kind(key: str, family: Family, policy: ChannelPolicy, *, address_from: str, credentials=()) -> ChannelKind:
    """Messenger and Instagram: the Send API of a Facebook Page, on the page's token."""
    return ChannelKind(
        key=key,
        label=family.label,
        family=family,
        provider="meta",
        policy=policy,
        adapter={"messenger": adapter.MessengerAdapter, "instagram": adapter.InstagramAdapter}[key],
        webhooks=WEBHOOKS,
        credentials=(*PAGE_CREDENTIALS, *credentials),
        capabilities=PAGE_CAPABILITIES,
        routes_by_address=True,
        address_from=address_from,
        uses_meta_app=True,
        # One page token serves the page's Messenger and Instagram channels: they fail together.
        shared_credential="page_id",
        reconnect_reason=connect.TOKEN_PROBLEM_REASON,
        urls=WEBHOOK_URLS,
        settings_urls=SETTINGS_URLS,
    )


MESSENGER = _page_kind(
    "messenger", MESSENGER_FAMILY,
    _page_policy("Messenger", "messenger", text_limit=2000, image_max=25 * MB, other_max=25 * MB),
    address_from="page_id",
)
INSTAGRAM = _page_kind(
    "instagram", INSTAGRAM_FAMILY,
    _page_policy("Instagram", "instagram", text_limit=1000, image_max=8 * MB, other_max=25 * MB),
    address_from="instagram_account_id",
    credentials=(Credential("instagram_account_id", "Instagram account id", help="Set when the page is connected."),),
)
WHATSAPP_CLOUD = ChannelKind(
    key="meta_whatsapp",
    label="WhatsApp (Cloud API)",
    family=whatsapp.FAMILY,
    provider="meta",
    policy=whatsapp.POLICY,
    adapter=adapter.WhatsAppCloudAdapter,
    credentials=(
        Credential("waba_id", "WhatsApp Business Account id"),
        Credential("phone_number_id", "Phone number id"),
        Credential("access_token", "Access token", secret=True, help="A system-user token of the business account."),
    ),
    capabilities=Capabilities(read_receipts=True, templates=True, reactions=True),
    routes_by_address=True,
    address_from="phone_number_id",
    uses_meta_app=True,
    reconnect_reason=connect.WHATSAPP_TOKEN_PROBLEM_REASON,
    webhooks=WEBHOOKS,
    urls=WEBHOOK_URLS,
    settings_urls=SETTINGS_URLS,
)
