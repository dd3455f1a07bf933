"""Fixtures for the inbox's live tests: the real Redis channel layer and session cookies."""

import uuid

import pytest
from django.conf import settings as django_settings
from django.test import Client

from apps.accounts.middleware import SESSION_KEY

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/6"


@pytest.fixture
def redis_layer(settings):
    """The Redis channel layer (msgpack on the wire), isolated from other runs by a group prefix."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [django_settings.REDIS_URL or LOCAL_REDIS_URL],
                "prefix": f"test-{uuid.uuid4().hex[:12]}",
                "expiry": 10,
            },
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


# Until the pages' fragment files land, the consumer renders these stand-ins (the real files in
# templates/inbox/ come first in the search path and win as soon as they exist).
STAND_INS = {
    "inbox/_message.html": (
        '<div id="message-{{ message.pk }}" class="bubble">{{ message.text|linebreaksbr }}'
        '{% include "inbox/_message_status.html" %}</div>'
    ),
    "inbox/_message_status.html": '<span id="message-{{ message.pk }}-status" class="status-{{ message.status }}">{{ message.get_status_display }}</span>',
    "inbox/_conversation_row.html": (
        '<a id="conversation-{{ conversation.pk }}" href="/inbox/{{ conversation.pk }}/">'
        "{{ conversation.contact.display_name }} {{ conversation.last_message_preview }}"
        '{% if conversation.has_unread %}<span class="unread">new</span>{% endif %}</a>'
    ),
}


@pytest.fixture(autouse=True)
def fragment_templates(settings, tmp_path):
    directory = tmp_path / "stand-in-templates"
    for name, body in STAND_INS.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(body)
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [*settings.TEMPLATES[0]["DIRS"], directory]}]
