"""The scenarios, in the order the run plays them; each returns a frozen result.

A scenario provokes one situation (steady work, an operator's change, a
fault) on the :class:`~stress.stage.Stage` and measures what happened. It
judges nothing: :mod:`stress.checks` does, from the result alone.
"""

from stress.scenarios.faults import blocked_schedule, refusing_database, unanswering_database
from stress.scenarios.kill import kill
from stress.scenarios.operator import override, pause
from stress.scenarios.outage import database_restart, repeated_restarts
from stress.scenarios.pooler import pooler
from stress.scenarios.shutdown import drain, final_stop, sigterm
from stress.scenarios.steady import steady

__all__ = [
    "blocked_schedule",
    "database_restart",
    "drain",
    "final_stop",
    "kill",
    "override",
    "pause",
    "pooler",
    "refusing_database",
    "repeated_restarts",
    "sigterm",
    "steady",
    "unanswering_database",
]
