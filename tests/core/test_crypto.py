from cryptography.fernet import Fernet
from django.db import connection

from apps.core import crypto
from apps.providers.models import Channel
from tests import factories


def test_secrets_are_ciphertext_in_the_database(acme):
    channel = factories.ChannelFactory(organization=acme)
    with connection.cursor() as cursor:
        cursor.execute("select secrets from providers_channel where id = %s", [channel.pk])
        (stored,) = cursor.fetchone()
    assert factories.TEST_AUTH_TOKEN not in stored
    assert Channel.objects.get(pk=channel.pk).secrets == {"auth_token": factories.TEST_AUTH_TOKEN}


def test_key_rotation_keeps_old_rows_readable(acme, settings):
    channel = factories.ChannelFactory(organization=acme)
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    assert Channel.objects.get(pk=channel.pk).secrets["auth_token"] == factories.TEST_AUTH_TOKEN
    with connection.cursor() as cursor:
        cursor.execute("select secrets from providers_channel where id = %s", [channel.pk])
        (stored,) = cursor.fetchone()
    rotated = crypto.rotate_value(stored)
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]
    assert factories.TEST_AUTH_TOKEN in crypto.decrypt(rotated)


def test_a_wrong_key_says_so(acme, settings):
    channel = factories.ChannelFactory(organization=acme)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    try:
        Channel.objects.get(pk=channel.pk)
    except ValueError as exc:
        assert "FIELD_ENCRYPTION_KEY" in str(exc)
    else:
        raise AssertionError("decrypting with the wrong key must fail loudly")
