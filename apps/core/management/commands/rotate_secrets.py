"""Re-encrypt every stored secret (every EncryptedJSONField) with the newest FIELD_ENCRYPTION_KEY.

Rotation: put the new key first in FIELD_ENCRYPTION_KEY (comma-separated, old keys after it),
deploy, run this, then drop the old keys. Rows are rewritten in place from their ciphertext;
plaintext is never printed.
"""

from cryptography.fernet import InvalidToken
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from apps.core.crypto import EncryptedJSONField, rotate_value


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field (channel secrets, ...) with the first key of FIELD_ENCRYPTION_KEY."

    def handle(self, *args, **options):
        with transaction.atomic():
            rotated = [
                (model, field, self._rotate(model, field))
                for model in apps.get_models()
                for field in model._meta.concrete_fields
                if isinstance(field, EncryptedJSONField)
            ]
        for model, field, count in rotated:
            what = f"the {field.verbose_name}"
            self.stdout.write(self.style.SUCCESS(f"Re-encrypted {what} of {count} {model._meta.verbose_name}(s)."))

    def _rotate(self, model, field) -> int:
        table = connection.ops.quote_name(model._meta.db_table)
        column = connection.ops.quote_name(field.column)
        pk = connection.ops.quote_name(model._meta.pk.column)
        rotated, unreadable = 0, []
        with connection.cursor() as cursor:
            # The raw column: the model field would decrypt it, and we only re-wrap the token.
            lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
            cursor.execute(f"SELECT {pk}, {column} FROM {table} WHERE {column} <> '' ORDER BY {pk}{lock}")
            for row_id, token in cursor.fetchall():
                try:
                    new_token = rotate_value(token)
                except InvalidToken:
                    unreadable.append(row_id)
                    continue
                cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", [new_token, row_id])
                rotated += 1
            if unreadable:
                raise CommandError(
                    f"No configured key decrypts the {field.name} of {model._meta.verbose_name}(s) "
                    f"{', '.join(map(str, unreadable))}; nothing was changed. Add the old key after the new one."
                )
        return rotated
