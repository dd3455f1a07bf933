"""Fixtures for the inbox's live tests: the real Redis channel layer and session cookies."""

import uuid

import pytest
from django.conf import settings as django_settings
from django.test import Client

from apps.accounts.middleware import SESSION_KEY

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/6"


@pytest.fixture
def redis_layer(settings):
    """The shipped Redis channel layer (pub/sub, msgpack on the wire), isolated from other runs by
    a prefix."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [django_settings.REDIS_URL or LOCAL_REDIS_URL], "prefix": f"test-{uuid.uuid4().hex[:12]}"},
        }
    }
    yield


def session_cookie(user, organization) -> bytes:
    """A real session for `user` with `organization` chosen, as the `cookie` header value."""
    client = Client()
    client.force_login(user)
    session = client.session
    session[SESSION_KEY] = organization.pk
    session.save()
    return f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}".encode()

