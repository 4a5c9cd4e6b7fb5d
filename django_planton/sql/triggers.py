"""PostgreSQL triggers and the channels they NOTIFY on (see :mod:`django_planton.notify`)."""

from __future__ import annotations

__all__ = [
    "CREATE_TRIGGER_SQL",
    "DROP_TRIGGER_SQL",
    "ENDED_CHANNEL",
    "IN_PROCESS_MARKER",
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

#: Marks the statement of a completion whose ending wakes its runner in-process
#: (:func:`django_planton.signals.wakes_in_process`): the trigger sends no NOTIFY
#: for it. Every notifying commit takes a lock that PostgreSQL holds across the
#: whole cluster, so a NOTIFY per completion serialises busy receivers.
IN_PROCESS_MARKER = "/* django_planton: wakes in process */"

CREATE_TRIGGER_SQL = [
    f"""
    CREATE OR REPLACE FUNCTION planton_notify_executions_ended() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('{ENDED_CHANNEL}', NEW.maintenance_task_id::text);
        RETURN NULL;
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS maintenance_task_execution_ended ON maintenance_task_execution",
    # A row trigger whose WHEN clause PostgreSQL checks without calling the
    # function: an UPDATE that ends nothing (a heartbeat) costs nothing, and
    # PostgreSQL sends identical notifications of one transaction once, so a
    # bulk complete() notifies once per task. (It replaced a statement trigger
    # with transition tables, which cost every UPDATE of the table.)
    f"""
    CREATE TRIGGER maintenance_task_execution_ended
    AFTER UPDATE OF ended_at ON maintenance_task_execution
    FOR EACH ROW
    WHEN (
        OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL
        AND strpos(current_query(), '{IN_PROCESS_MARKER}') = 0
    )
    EXECUTE FUNCTION planton_notify_executions_ended()
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
