"""The runners behind PgBouncer in transaction pooling mode, as managed PostgreSQL often is.

Under transaction pooling a ``LISTEN`` is lost with the server connection it
ran on. Each runner must notice (its probe NOTIFY never arrives), say so
once, and keep working on in-process wake-ups and polling. Then the same
runners with ``PLANTON_LISTEN_DATABASE`` naming an alias that reaches
PostgreSQL directly: they must hear again, and say nothing.

The four runners are stopped with SIGTERM, as the shutdown scenario does, and
four new ones started behind a :class:`~scripts.pgbouncer.PgBouncer` of this
scenario; at the end the runners are started through the stage's relay
again, for the scenarios that follow.
"""

from __future__ import annotations

import contextlib
import time

from scripts.pgbouncer import PgBouncer
from stress import database, logs
from stress.config import DEAF_TEXT, DIRECT_WATCH, EMAIL_TASK, PGPORT, PROBE_WAIT
from stress.records import now
from stress.results import PoolerResult, PoolerStretch
from stress.stage import Stage, relayed, wait_for


def pooler(stage: Stage) -> PoolerResult:
    """Four runners behind PgBouncer, then with a direct listener; then back to the relay."""
    fleet = stage.fleet
    relay_url = fleet.database_url
    stage.ensure_backlog()
    fleet.stop(fleet.current())
    bouncer = PgBouncer(target_port=PGPORT).start()
    stage.say(f"PgBouncer (transaction pooling) on port {bouncer.port}")
    stretches: list[PoolerStretch] = []
    try:
        fleet.database_url = relayed(stage.url, bouncer.port)
        stretches.append(behind_pooler(stage, stage.profile.pooler_window, listen=None))
        stretches.append(behind_pooler(stage, DIRECT_WATCH, listen=stage.url))
    finally:
        pooled_log = bouncer.log[-3000:]
        fleet.stop([runner for runner in fleet.current() if runner.alive])
        bouncer.stop()
        fleet.database_url, fleet.extra_env = relay_url, {}
        fleet.start()
    return PoolerResult(stretches=tuple(stretches), pooled_log=pooled_log)


def behind_pooler(stage: Stage, watch: float, *, listen: str | None) -> PoolerStretch:
    """Four runners through the pooler for ``watch`` seconds; their listener direct if ``listen``.

    The pooled runners' logs are new files: everything in them counts.
    """
    db = stage.db
    fleet = stage.fleet
    fleet.extra_env = {"STRESS_LISTEN_URL": listen} if listen else {}
    runners = fleet.start()
    start = now()
    deadline = time.monotonic() + watch
    time.sleep(watch / 2)
    stage.ensure_backlog()  # the work must not run out before the stretch does
    time.sleep(max(0.0, deadline - time.monotonic()))
    end = now()
    if listen is None:
        with contextlib.suppress(TimeoutError):
            wait_for("every runner's deaf-listener warning", lambda: all_deaf(stage), PROBE_WAIT)
    deaf = logs.matching(stage.logs_between({}), DEAF_TEXT)
    listeners = database.listeners(db)
    samples = stage.sampler.window(start, end)
    starts = len(database.starts_between(db, EMAIL_TASK, start, end))
    exits = fleet.stop(runners)
    how = "direct" if listen else "pgbouncer"
    stage.say(f"{starts} executions started behind PgBouncer (listener: {how})")
    return PoolerStretch(
        listen=how,
        labels=tuple(runner.label for runner in runners),
        start=start,
        end=end,
        deaf=deaf,
        listeners=listeners,
        starts=starts,
        most_running=max((sample.running for sample in samples), default=-1),
        limit=min((sample.limit for sample in samples), default=0),
        exits=exits,
    )


def all_deaf(stage: Stage) -> bool:
    return all(count for _, count in logs.matching(stage.logs_between({}), DEAF_TEXT))
