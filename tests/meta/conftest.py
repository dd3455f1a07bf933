"""Acme's Meta channels on the fake Graph API (`meta_app` and `fake_meta` come from
tests/fixtures/meta.py, with the constants)."""

import pytest

from apps.providers.models import Channel
from tests.fixtures.meta import (
    DISPLAY_PHONE_NUMBER,
    IG_ID,
    IG_USERNAME,
    PAGE_ID,
    PAGE_NAME,
    PAGE_TOKEN,
    PHONE_NUMBER_ID,
    WABA_ID,
    WHATSAPP_TOKEN,
)

DEFAULT_CHANNEL_SETTINGS = {"send_read_receipts": True, "send_typing_indicators": True}


@pytest.fixture
def messenger_channel(acme):
    """Acme's Messenger channel on the fake page (as `meta_page_connect` leaves it)."""
    return Channel.objects.create(
        organization=acme,
        kind="messenger",
        name=PAGE_NAME,
        address=PAGE_ID,
        config={"page_id": PAGE_ID, "page_name": PAGE_NAME},
        secrets={"page_access_token": PAGE_TOKEN},
        settings=dict(DEFAULT_CHANNEL_SETTINGS),
    )


@pytest.fixture
def instagram_channel(acme):
    """Acme's Instagram channel, linked to the fake page."""
    return Channel.objects.create(
        organization=acme,
        kind="instagram",
        name=f"@{IG_USERNAME}",
        address=IG_ID,
        config={"page_id": PAGE_ID, "page_name": PAGE_NAME, "instagram_account_id": IG_ID, "instagram_username": IG_USERNAME},
        secrets={"page_access_token": PAGE_TOKEN},
        settings=dict(DEFAULT_CHANNEL_SETTINGS),
    )


@pytest.fixture
def meta_whatsapp_channel(acme):
    """Acme's WhatsApp Cloud channel on the fake number."""
    return Channel.objects.create(
        organization=acme,
        kind="meta_whatsapp",
        name=f"WhatsApp {DISPLAY_PHONE_NUMBER}",
        address=PHONE_NUMBER_ID,
        config={"waba_id": WABA_ID, "phone_number_id": PHONE_NUMBER_ID, "display_phone_number": DISPLAY_PHONE_NUMBER},
        secrets={"access_token": WHATSAPP_TOKEN},
        settings=dict(DEFAULT_CHANNEL_SETTINGS),
    )
