"""Meta fixtures: the app configuration (`meta_app`), the fake Graph API (`fake_meta`) and Acme's
Meta channels on it. The constants below are the fake's page, Instagram account and WhatsApp
Cloud number; import them in tests (`from tests.meta.conftest import PAGE_ID`)."""

import pytest

from apps.providers.models import Channel, MetaAppConfig

APP_ID = "100200300400500"
APP_SECRET = "test-meta-app-secret-0123456789abcdef"
VERIFY_TOKEN = "test-meta-verify-token"
GRAPH_VERSION = "v21.0"

PAGE_ID = "104857600000001"
PAGE_NAME = "Acme Support"
PAGE_TOKEN = "EAAPage-test-page-token-acme-0123456789"
IG_ID = "17841400000000001"
IG_USERNAME = "acme.support"

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "+1 555-019-2837"
WHATSAPP_TOKEN = "EAAWhatsApp-test-system-user-token-0123456789"

DEFAULT_CHANNEL_SETTINGS = {"send_read_receipts": True, "send_typing_indicators": True}


@pytest.fixture
def meta_app(db):
    """The system-wide Meta app configuration, filled with the test app (matches `fake_meta`)."""
    config = MetaAppConfig.current()
    config.app_id = APP_ID
    config.secrets = {"app_secret": APP_SECRET}
    config.verify_token = VERIFY_TOKEN
    config.graph_version = GRAPH_VERSION
    config.save()
    return config


@pytest.fixture(scope="session")
def _fake_meta_server():
    from tests.fakes.meta import FakeMeta

    fake = FakeMeta().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_meta(_fake_meta_server, settings):
    """The fake Graph API (real HTTP on 127.0.0.1), knowing the test app, Acme's page (with its
    linked Instagram account) and Acme's WhatsApp Cloud number. The app reaches it through
    META_GRAPH_BASE / META_DIALOG_BASE; its CDN host (127.0.0.1) is an allowed media host."""
    fake = _fake_meta_server
    fake.reset()
    fake.set_app(APP_ID, APP_SECRET)
    fake.add_page(PAGE_ID, PAGE_NAME, PAGE_TOKEN, instagram=(IG_ID, IG_USERNAME))
    fake.add_whatsapp_number(
        PHONE_NUMBER_ID, WHATSAPP_TOKEN, display_phone_number=DISPLAY_PHONE_NUMBER, verified_name="Acme", waba_id=WABA_ID
    )
    settings.META_GRAPH_BASE = fake.base_url
    settings.META_DIALOG_BASE = fake.base_url
    settings.META_MEDIA_HOSTS = [*settings.META_MEDIA_HOSTS, "127.0.0.1"]
    yield fake
    fake.release_hangs()


@pytest.fixture
def messenger_channel(acme):
    """Acme's Messenger channel on the fake page (as `meta_page_connect` leaves it)."""
    return Channel.objects.create(
        organization=acme,
        kind=Channel.Kind.MESSENGER,
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
        kind=Channel.Kind.INSTAGRAM,
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
        kind=Channel.Kind.META_WHATSAPP,
        name=f"WhatsApp {DISPLAY_PHONE_NUMBER}",
        address=PHONE_NUMBER_ID,
        config={"waba_id": WABA_ID, "phone_number_id": PHONE_NUMBER_ID, "display_phone_number": DISPLAY_PHONE_NUMBER},
        secrets={"access_token": WHATSAPP_TOKEN},
        settings=dict(DEFAULT_CHANNEL_SETTINGS),
    )
