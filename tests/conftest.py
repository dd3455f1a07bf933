"""The tenancy cast: alice (owner of Acme), bob (agent at Acme), charlie (owner of Globex, sees nothing of Acme)."""

import os

import pytest
from django.test import Client

from tests import factories


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
    from config.celery import app

    app.conf.task_always_eager = True
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
