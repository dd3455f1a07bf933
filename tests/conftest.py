"""The tenancy cast: alice (owner of Acme), bob (agent at Acme), charlie (owner of Globex, sees nothing of Acme)."""

import os

import pytest
from django.test import Client

from tests import factories

# Fixtures more than one folder uses (Meta's fake Graph, the fake Bot API, the email servers, the
# browser harness, Acme's objects).
pytest_plugins = ["tests.fixtures.browser", "tests.fixtures.email", "tests.fixtures.meta", "tests.fixtures.telegram",
                  "tests.fixtures.tenancy"]


def pytest_configure(config):
    # CI must run on the real services; locally, without them, the embedded defaults apply.
    if os.environ.get("CI") and not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        raise pytest.UsageError("CI runs need DATABASE_URL and REDIS_URL (see .ci/run).")


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PUBLIC_BASE_URL = "https://parley.test"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from apps.core import broker
    from config.celery import app

    app.conf.task_always_eager = True
    # A broker failure another test provoked must not make this one skip its enqueues.
    broker.reset()
    yield


@pytest.fixture
def acme(db):
    return factories.OrganizationFactory(name="Acme")


@pytest.fixture
def globex(db):
    return factories.OrganizationFactory(name="Globex")


@pytest.fixture
def alice(acme):
    return factories.MembershipFactory(organization=acme, role="owner", user__username="alice").user


@pytest.fixture
def bob(acme):
    return factories.MembershipFactory(organization=acme, role="agent", user__username="bob").user


@pytest.fixture
def charlie(globex):
    return factories.MembershipFactory(organization=globex, role="owner", user__username="charlie").user


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice):
    return _client_for(alice)


@pytest.fixture
def bob_client(bob):
    return _client_for(bob)


@pytest.fixture
def charlie_client(charlie):
    return _client_for(charlie)


@pytest.fixture(scope="session")
def _fake_twilio_server():
    from tests.fakes.twilio import FakeTwilio

    fake = FakeTwilio().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_twilio(_fake_twilio_server, settings):
    """The fake Twilio server (real HTTP on 127.0.0.1) with the test account; the app's real
    Twilio client reaches it through TWILIO_API_BASE."""
    fake = _fake_twilio_server
    fake.reset()
    fake.add_account(factories.TEST_ACCOUNT_SID, factories.TEST_AUTH_TOKEN, [factories.TEST_SENDER])
    settings.TWILIO_API_BASE = fake.base_url
    settings.TWILIO_MEDIA_HOSTS = [*settings.TWILIO_MEDIA_HOSTS, "127.0.0.1"]
    return fake


@pytest.fixture
def whatsapp(acme):
    """Acme's Twilio WhatsApp channel, configured for the fake Twilio account."""
    return factories.ChannelFactory(organization=acme)


@pytest.fixture
def customer(acme):
    """An opted-in Acme contact with a valid phone."""
    return factories.ContactFactory(organization=acme, name="Siti Rahman", phone="+60123456789")
