"""Encryption at rest for provider secrets (Fernet keys from FIELD_ENCRYPTION_KEY)."""

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("Stored secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY.") from exc


class EncryptedJSONField(models.TextField):
    """A dict of secrets, stored as one Fernet token. Never rendered, logged or serialized."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return {}
        return json.loads(decrypt(value))

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        if value in (None, ""):
            return {}
        return json.loads(decrypt(value))

    def get_prep_value(self, value):
        if not value:
            return ""
        return encrypt(json.dumps(value, sort_keys=True))

    def value_to_string(self, obj):
        # Fixtures and dumps keep the ciphertext, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))


def rotate_value(token: str) -> str:
    """Re-encrypt a stored token with the newest key (used by `manage.py rotate_secrets`)."""
    return fernet().rotate(token.encode()).decode()
