import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from apps.core import crypto
from apps.providers.models import Channel
from tests import factories


def raw(channel) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM providers_channel WHERE id = %s", [channel.pk])
        return cursor.fetchone()[0]


def test_rotation_reencrypts_with_the_new_key(settings, acme, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    channels = [factories.ChannelFactory(organization=acme, name=f"c{n}") for n in range(2)]
    unconfigured = factories.ChannelFactory(organization=acme, name="empty", secrets={})
    before = [raw(c) for c in channels]

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_secrets")
    assert "Re-encrypted the secrets of 2 channel(s)." in capsys.readouterr().out
    after = [raw(c) for c in channels]
    assert all(a != b for a, b in zip(after, before, strict=True))
    assert raw(unconfigured) == ""

    # The old key can go: rows stay readable with the new one alone.
    settings.FIELD_ENCRYPTION_KEYS = [new]
    for channel in channels:
        assert Channel.objects.get(pk=channel.pk).secrets == {"auth_token": factories.TEST_AUTH_TOKEN}
    assert factories.TEST_AUTH_TOKEN not in "".join(after)
    with pytest.raises(ValueError):
        settings.FIELD_ENCRYPTION_KEYS = [old]
        crypto.decrypt(after[0])


def test_rotation_without_the_old_key_changes_nothing(settings, acme):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    channel = factories.ChannelFactory(organization=acme)
    before = raw(channel)
    settings.FIELD_ENCRYPTION_KEYS = [new]
    with pytest.raises(CommandError, match=f"channel\\(s\\) {channel.pk}; nothing was changed"):
        call_command("rotate_secrets")
    assert raw(channel) == before
