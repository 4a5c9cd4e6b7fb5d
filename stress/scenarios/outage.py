"""PostgreSQL goes away while the runners work, and comes back.

The server is stopped and started with ``pg_ctl`` through
``scripts/postgres.py``'s :class:`~scripts.postgres.PostgresServer`, with
the options it started the server with, so the data survive and the
runners must reconnect (their LISTEN connections included).
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta

from stress import database
from stress.config import DATABASE_DOWN_FOR, EMAIL_TASK, IDLE_TASK, KILL_MAX_DURATION
from stress.records import now, seconds
from stress.results import Outage, RepeatedRestartsResult, RestartResult
from stress.stage import Stage, wait_for


def restart_database(stage: Stage) -> Outage:
    """Stop PostgreSQL (fast), wait, start it again with the same options."""
    server = stage.server
    stage.db.close()
    stopping = now()
    server.pg_ctl("-m", "fast", "-w", "stop")
    down = now()
    stage.say(f"PostgreSQL stopped; down for {DATABASE_DOWN_FOR:g}s")
    time.sleep(DATABASE_DOWN_FOR)
    alive = len(stage.fleet.alive_labels())
    server.pg_ctl(
        "-l", str(server.root / "server.log"), "-w", "-t", "60", "-o", server.options, "start"
    )
    up = now()
    stage.say(f"PostgreSQL back after {seconds(up - down):.1f}s")
    return Outage(stopping, down, up, alive)


def wait_stranded_end(stage: Stage, up: datetime) -> None:
    """Until housekeeping ended the executions an outage stranded.

    Executions whose receivers met the dead connection stay running until
    their maximum duration; those of the first seconds after the restart
    are waited for too.
    """
    time.sleep(max(0.0, 2.0 - seconds(now() - up)))
    wait_for(
        "executions stranded by the restart end",
        lambda: not database.running_started_before(stage.db, up + timedelta(seconds=2)),
        KILL_MAX_DURATION + 30,
    )


def wait_listening(stage: Stage, up: datetime, timeout: float = 45.0) -> tuple[int, float]:
    """Until the four runners LISTEN again; their number and the seconds since ``up``.

    Each runner LISTENs for ended executions on a connection of its own, which
    must come back too (else freed slots wait out the delays).
    """
    with contextlib.suppress(TimeoutError):
        wait_for("four LISTEN connections", lambda: database.listeners(stage.db) >= 4, timeout)
    return database.listeners(stage.db), seconds(now() - up)


def errors_logged(stage: Stage, offsets: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """ERROR lines each current runner logged after its offset."""
    errors: dict[str, int] = {}
    for runner in stage.fleet.current():
        with runner.log.open("rb") as log:
            log.seek(offsets.get(runner.label, 0))
            errors[runner.label] = sum(1 for line in log if b" ERROR " in line)
    return tuple(sorted(errors.items()))


def database_restart(stage: Stage) -> RestartResult:
    """One restart while the runners work: they survive, log errors, and work again."""
    db = stage.db
    stage.ensure_backlog()
    stage.wait_for_work()
    offsets = stage.log_offsets()
    outage = restart_database(stage)
    up = outage.up
    first = wait_for(
        "a new send_user_email execution after the restart",
        lambda: database.first_start_after(db, EMAIL_TASK, up),
        90,
    )
    first_idle = wait_for(
        "an idle_probe attempt after the restart",
        lambda: next((at for at, _ in database.attempts(db, IDLE_TASK) if at > up), None),
        60,
    )
    wait_stranded_end(stage, up)
    stranded = tuple(database.terminated_since(db, outage.stopping))
    listening, relisten = wait_listening(stage, up)
    return RestartResult(
        outage=outage,
        alive_after=len(stage.fleet.alive_labels()),
        errors=errors_logged(stage, offsets),
        first_start=first,
        first_idle=first_idle,
        stranded=stranded,
        listening=listening,
        relisten=relisten,
    )


def repeated_restarts(stage: Stage) -> RepeatedRestartsResult:
    """More restarts in a row (full form): the runners LISTEN again each time."""
    delays: list[float] = []
    alive: list[int] = []
    outages: list[Outage] = []
    up = now()
    for _ in range(stage.profile.repeated_restarts):
        outage = restart_database(stage)
        outages.append(outage)
        up = outage.up
        listening, relisten = wait_listening(stage, up)
        stage.say(f"{listening}/4 runners LISTEN again {relisten:.1f}s after the restart")
        delays.append(relisten if listening == 4 else float("inf"))
        alive.append(outage.alive_while_down)
    wait_stranded_end(stage, up)
    alive.append(len(stage.fleet.alive_labels()))
    return RepeatedRestartsResult(delays=tuple(delays), alive=tuple(alive), outages=tuple(outages))
