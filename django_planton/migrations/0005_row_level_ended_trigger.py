"""The executions-ended trigger becomes a row trigger that a completion can opt out of.

The statement trigger of 0002 read transition tables on every UPDATE of the
executions table, and sent a NOTIFY for every completion. Its replacement
(``django_planton.sql.CREATE_TRIGGER_SQL``) fires only for rows that end, and
not for a completion whose runner wakes in its own process.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from django_planton.sql import CREATE_TRIGGER_SQL


def replace_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """PostgreSQL only; the statements replace the function and the trigger in place."""
    if schema_editor.connection.vendor == "postgresql":
        for statement in CREATE_TRIGGER_SQL:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("django_planton", "0004_runner_process")]

    # Going back keeps the row trigger: 0002's reverse drops it by the same names.
    operations = [migrations.RunPython(replace_trigger, migrations.RunPython.noop)]
