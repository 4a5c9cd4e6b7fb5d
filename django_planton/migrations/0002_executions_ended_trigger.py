from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from django_planton.sql import CREATE_TRIGGER_SQL, DROP_TRIGGER_SQL


def create_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """PostgreSQL only: NOTIFY the runners when executions end (see django_planton.notify)."""
    if schema_editor.connection.vendor == "postgresql":
        for statement in CREATE_TRIGGER_SQL:
            schema_editor.execute(statement)


def drop_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROP_TRIGGER_SQL:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("django_planton", "0001_initial")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
