"""PostgreSQL triggers and the channels they NOTIFY on (see :mod:`django_planton.notify`)."""

from __future__ import annotations

__all__ = [
    "CREATE_TRIGGER_SQL",
    "DROP_TRIGGER_SQL",
    "ENDED_CHANNEL",
    "PROBE_CHANNEL",
    "WAKE_CHANNEL",
    "WAKE_FUNCTION_SQL",
    "create_wake_trigger_sql",
    "drop_wake_trigger_sql",
]

#: Carries the ids of tasks whose executions ended, from the trigger below.
ENDED_CHANNEL = "django_planton_ended"
#: Carries the names of tasks to attempt now (``notify.wake_on_change``).
WAKE_CHANNEL = "django_planton_wake"
#: A listener's proof that notifications reach it (see ``notify.EndedListener``).
PROBE_CHANNEL = "django_planton_probe"

CREATE_TRIGGER_SQL = [
    f"""
    CREATE OR REPLACE FUNCTION planton_notify_executions_ended() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        task_ids text;
    BEGIN
        SELECT string_agg(DISTINCT new_rows.maintenance_task_id::text, ',')
          INTO task_ids
          FROM new_rows
          JOIN old_rows ON old_rows.id = new_rows.id
         WHERE old_rows.ended_at IS NULL AND new_rows.ended_at IS NOT NULL;
        IF task_ids IS NOT NULL THEN
            PERFORM pg_notify('{ENDED_CHANNEL}', task_ids);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER maintenance_task_execution_ended
    AFTER UPDATE ON maintenance_task_execution
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION planton_notify_executions_ended()
    """,
]

DROP_TRIGGER_SQL = [
    "DROP TRIGGER IF EXISTS maintenance_task_execution_ended ON maintenance_task_execution",
    "DROP FUNCTION IF EXISTS planton_notify_executions_ended()",
]

WAKE_FUNCTION_SQL = f"""
    CREATE OR REPLACE FUNCTION planton_wake_task() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{WAKE_CHANNEL}', TG_ARGV[0]);
        RETURN NULL;
    END
    $$
"""


def create_wake_trigger_sql(trigger: str, table: str, kinds: str, task_name: str) -> str:
    """The trigger of ``wake_on_change``; ``table`` comes quoted, the task name as a literal."""
    literal = "'" + task_name.replace("'", "''") + "'"
    return (
        f"CREATE TRIGGER {trigger} AFTER {kinds} ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION planton_wake_task({literal})"
    )


def drop_wake_trigger_sql(trigger: str, table: str) -> str:
    return f"DROP TRIGGER IF EXISTS {trigger} ON {table}"
