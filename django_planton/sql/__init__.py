"""Every statement django-planton builds by hand, in one package.

The runner's hot paths (locking a batch of task rows, reading their active
instructions, inserting executions, recording attempts and ending
executions) run thousands of times a second, and compiling a queryset each
time cost several times what the database spends on the statement. So they
are built here once per shape, from the models' metadata, with every value a
parameter prepared by its field as the ORM would. On PostgreSQL a batch's
ids or names go as one array parameter (:func:`postgres_array`), so one
statement serves every batch size. The PostgreSQL triggers and their
channels live here too. Nothing else in the package writes SQL.

- :mod:`.clock`: the database's clock, which every stored time comes from;
- :mod:`.reads`: a batch's task rows, locked, and their active instructions;
- :mod:`.writes`: updates by primary key, the INSERT of a batch's executions;
- :mod:`.arrays`: one array parameter for a whole batch (PostgreSQL);
- :mod:`.triggers`: the PostgreSQL triggers and their channels.
"""

from .arrays import postgres_array
from .clock import (
    DatabaseClock,
    DatabaseNow,
    DatabaseNowPlus,
    later,
    now_sql,
    read_database_now,
    uses_process_clock,
)
from .reads import TASK_ROW_FIELDS, InstructionStates, TaskReads, TaskRow
from .triggers import (
    CREATE_TRIGGER_SQL,
    DROP_TRIGGER_SQL,
    ENDED_CHANNEL,
    IN_PROCESS_MARKER,
    PROBE_CHANNEL,
    WAKE_CHANNEL,
    WAKE_FUNCTION_SQL,
    create_wake_trigger_sql,
    drop_wake_trigger_sql,
)
from .writes import insert_executions, update_row, update_rows

__all__ = [
    "CREATE_TRIGGER_SQL",
    "DROP_TRIGGER_SQL",
    "ENDED_CHANNEL",
    "IN_PROCESS_MARKER",
    "PROBE_CHANNEL",
    "TASK_ROW_FIELDS",
    "WAKE_CHANNEL",
    "WAKE_FUNCTION_SQL",
    "DatabaseClock",
    "DatabaseNow",
    "DatabaseNowPlus",
    "InstructionStates",
    "TaskReads",
    "TaskRow",
    "create_wake_trigger_sql",
    "drop_wake_trigger_sql",
    "insert_executions",
    "later",
    "now_sql",
    "postgres_array",
    "read_database_now",
    "update_row",
    "update_rows",
    "uses_process_clock",
]
