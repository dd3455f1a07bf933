from django.conf import settings
from django.db import migrations, models


class AddTextFieldPortable(migrations.AddField):
    """SQLite adds a NOT NULL column with a default only by rebuilding the table, and the rebuild
    cannot recreate the list's NULLS LAST indexes (0004): there a plain ADD COLUMN ... DEFAULT ''
    does it. PostgreSQL gets the ordinary operation."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        field = model._meta.get_field(self.name)
        quote = schema_editor.quote_name
        schema_editor.execute(
            f"ALTER TABLE {quote(model._meta.db_table)} ADD COLUMN {quote(field.column)} "
            f"varchar({field.max_length}) NOT NULL DEFAULT ''"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_membership_signature'),
        ('contacts', '0003_consent_per_channel_kind'),
        ('conversations', '0004_conversation_list_indexes_nulls_last'),
        ('providers', '0004_channel_kind_from_catalog'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='conversation',
            name='one_open_conversation',
        ),
        AddTextFieldPortable(
            model_name='conversation',
            name='subject',
            field=models.CharField(blank=True, default='', max_length=255),
        ),
        AddTextFieldPortable(
            model_name='conversation',
            name='thread',
            field=models.CharField(blank=True, default='', max_length=255),
        ),
        migrations.AddField(
            model_name='message',
            name='details',
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name='conversation',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'resolved'), _negated=True), fields=('contact', 'channel', 'thread'), name='one_open_conversation'),
        ),
    ]
