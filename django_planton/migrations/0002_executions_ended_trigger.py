from django.db import migrations

from django_planton.notify import CREATE_TRIGGER_SQL, DROP_TRIGGER_SQL


def create_trigger(apps, schema_editor):
    """PostgreSQL only: NOTIFY the runners when executions end (see django_planton.notify)."""
    if schema_editor.connection.vendor == "postgresql":
        for statement in CREATE_TRIGGER_SQL:
            schema_editor.execute(statement)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROP_TRIGGER_SQL:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("django_planton", "0001_initial")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
