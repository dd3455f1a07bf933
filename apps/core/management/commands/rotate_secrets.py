"""Re-encrypt every stored provider secret with the newest FIELD_ENCRYPTION_KEY.

Rotation: put the new key first in FIELD_ENCRYPTION_KEY (comma-separated, old keys after it),
deploy, run this, then drop the old keys. Rows are rewritten in place from their ciphertext;
plaintext is never printed.
"""

from cryptography.fernet import InvalidToken
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from apps.core.crypto import rotate_value
from apps.providers.models import Channel


class Command(BaseCommand):
    help = "Re-encrypt Channel.secrets with the first key of FIELD_ENCRYPTION_KEY."

    def handle(self, *args, **options):
        table = connection.ops.quote_name(Channel._meta.db_table)
        column = connection.ops.quote_name(Channel._meta.get_field("secrets").column)
        rotated, unreadable = 0, []
        with transaction.atomic(), connection.cursor() as cursor:
            # The raw column: the model field would decrypt it, and we only re-wrap the token.
            lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
            cursor.execute(f"SELECT id, {column} FROM {table} WHERE {column} <> '' ORDER BY id{lock}")
            for pk, token in cursor.fetchall():
                try:
                    new_token = rotate_value(token)
                except InvalidToken:
                    unreadable.append(pk)
                    continue
                cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [new_token, pk])
                rotated += 1
            if unreadable:
                raise CommandError(
                    "No configured key decrypts the secrets of channel(s) "
                    f"{', '.join(map(str, unreadable))}; nothing was changed. Add the old key after the new one."
                )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted the secrets of {rotated} channel(s)."))
