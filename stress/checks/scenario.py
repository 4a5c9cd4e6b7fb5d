"""The checks of each scenario: pure functions of its result (see ``stress/README.md``)."""

from __future__ import annotations

from datetime import timedelta

from stress.checks.base import EXAMPLES, Check, Findings, exits_detail, exits_summary
from stress.config import (
    DATABASE_DOWN_FOR,
    IDLE_DELAY,
    KILL_MAX_DURATION,
    LISTEN_WITHIN,
    OVERRIDE,
    OVERRIDE_GRACE,
    RATE_LIMIT,
    RECOVERY_WITHIN,
    SHUTDOWN_LIMIT,
    SLOW_DELAY,
    TERMINATED_REASON,
)
from stress.records import seconds
from stress.results import (
    DrainResult,
    KillResult,
    OverrideResult,
    PauseResult,
    RepeatedRestartsResult,
    RestartResult,
    ShutdownResult,
    SteadyResult,
)

MIN_RATE = 0.5  # attempts per second across the runners, for a task with a 1 s delay


def steady(result: SteadyResult) -> Findings:
    """The shared cadence of the 1 s probes, and slow_probe attempted once."""
    length = result.length
    idle_rate = result.idle_attempts / length
    bad_rate = result.bad_attempts / length
    return Findings(
        checks=(
            Check(
                "cadence idle_probe",
                MIN_RATE <= idle_rate <= RATE_LIMIT,
                f"{result.idle_attempts} attempts in {length:.1f}s across 4 runners = "
                f"{idle_rate:.2f}/s (delay {IDLE_DELAY:g}s; expect ~1.0, fail above {RATE_LIMIT})",
            ),
            Check(
                "cadence bad_input_probe",
                MIN_RATE <= bad_rate <= RATE_LIMIT,
                f"{result.bad_attempts} failed attempts in {length:.1f}s = {bad_rate:.2f}/s "
                f"(a failing task backs off like any other: expect ~1.0, fail above {RATE_LIMIT})",
            ),
            Check(
                "slow_probe first attempt",
                result.slow_attempts == 1,
                f"{result.slow_attempts} attempt(s) since start (expect exactly 1; "
                f"delay {SLOW_DELAY:g}s)",
            ),
        ),
        summary=(
            ("e-mails per second (steady)", f"{result.sent / length:.0f}"),
            ("idle_probe attempts/s, 4 runners", f"{idle_rate:.2f} (expect ~1.0)"),
        ),
    )


def pause(result: PauseResult) -> Findings:
    """No work started after a pause, beyond one delay plus 1 s, while work was owed."""
    # send_user_email's delay after work is 0 s, idle_probe's 1 s: one delay plus 1 s.
    email_deadline = result.paused + timedelta(seconds=1)
    idle_deadline = result.paused + timedelta(seconds=IDLE_DELAY + 1)
    email_late = [at for at in result.email_starts if email_deadline < at <= result.watched]
    idle_late = [at for at in result.idle_attempts if idle_deadline < at <= result.watched]
    lag = seconds(result.last_start - result.paused)
    last_idle = max(result.idle_attempts, default=None)
    idle_lag = seconds(last_idle - result.paused) if last_idle else float("nan")
    check = Check(
        "operator pause",
        not email_late and not idle_late and result.owed > 0,
        f"last send_user_email start {lag:+.3f}s after the pause, {len(email_late)} started "
        f"later than 1s after it; last idle_probe attempt {idle_lag:+.3f}s after it, "
        f"{len(idle_late)} later than {IDLE_DELAY + 1:g}s; {result.owed} accounts owed while "
        f"paused (watched {result.watch:g}s); work resumed {result.resumed_after:.2f}s after "
        "unpausing",
    )
    return Findings((check,), (("pause: last start after pause", f"{lag:+.3f}s (limit +1.0s)"),))


def override(result: OverrideResult) -> Findings:
    """Under a lowered limit, once the grace period is over, never more running; work goes on."""
    highest = max(result.after_grace, default=-1)
    drained = max(result.within_grace, default=-1)
    check = Check(
        "operator override",
        0 <= highest <= OVERRIDE and len(result.after_grace) > 10 and result.starts > 0,
        f"max running {highest} over {len(result.after_grace)} samples from {OVERRIDE_GRACE:g}s "
        f"after the override to {OVERRIDE} (max {drained} within the grace period); "
        f"{result.starts} executions started under it",
    )
    summary = (("override 2: max sampled running", f"{highest} (limit {OVERRIDE})"),)
    return Findings((check,), summary)


def kill(result: KillResult) -> Findings:
    """The killed runner's executions all terminated, not early, signalled and logged."""
    ended = result.ended
    count = len(ended)
    terminated = [
        row
        for row in ended
        if row.terminated_at is not None and row.terminated_reason == TERMINATED_REASON
    ]
    too_early = [row for row in ended if seconds(row.ended_at - row.started_at) < KILL_MAX_DURATION]
    after_kill = max((seconds(row.ended_at - result.killed) for row in ended), default=float("nan"))
    examples: tuple[str, ...] = ()
    if result.signalled < count:
        examples = (
            *(f"      terminated event: {row}" for row in result.events),
            *(f"      execution: {row}" for row in ended),
        )
    check = Check(
        "kill -9 of a runner",
        bool(ended)
        and len(terminated) == count
        and not too_early
        and result.signalled == count
        and result.logged == count,
        f"{count} executions left running by {result.label}; {len(terminated)} terminated "
        f"({TERMINATED_REASON!r}) {after_kill:.1f}s after the kill (maximum duration "
        f"{KILL_MAX_DURATION}s), {len(too_early)} before their maximum duration; "
        f"execution_terminated received {result.signalled} time(s), the example site's receiver "
        f"logged {result.logged} of them",
        examples,
    )
    figure = f"{len(terminated)}/{count}, {after_kill:.1f}s after the kill"
    return Findings((check,), (("kill -9: executions terminated", figure),))


def database_restart(result: RestartResult) -> Findings:
    """The runners survived the outage, logged it, work started again and they LISTEN again."""
    outage = result.outage
    up = outage.up
    recovery = seconds(result.first_start - up)
    idle_recovery = seconds(result.first_idle - up)
    silent = [label for label, count in result.errors if count == 0]
    examples = tuple(
        f"      stranded although dispatched after the restart: execution {row.id} on "
        f"{row.hostname}, started {seconds(row.started_at - up):+.3f}s after the database was "
        f"back, terminated {seconds(row.terminated_at - up):+.3f}s"
        for row in result.stranded
        if row.started_at > up
    )[:EXAMPLES]
    errors = ", ".join(f"{label} {count}" for label, count in result.errors)
    check = Check(
        "PostgreSQL restart",
        outage.alive_while_down == 4
        and result.alive_after == 4
        and not silent
        and recovery < RECOVERY_WITHIN
        and result.listening == 4,
        f"down {seconds(up - outage.down):.1f}s; runners alive while down "
        f"{outage.alive_while_down}/4, after {result.alive_after}/4; error lines logged per "
        f"runner {errors}; first new execution {recovery:.2f}s after the database was back, "
        f"first idle_probe attempt {idle_recovery:.2f}s; {len(result.stranded)} execution(s) "
        f"stranded by the restart ended through the maximum duration; {result.listening}/4 "
        f"runners LISTEN again ({result.relisten:.1f}s after the restart)",
        examples,
    )
    figure = f"{recovery:.2f}s to the first new execution (idle_probe {idle_recovery:.2f}s)"
    return Findings((check,), (("database restart: recovery", figure),))


def repeated_restarts(result: RepeatedRestartsResult) -> Findings:
    """After each further restart, all four runners LISTEN again in time and stay alive."""
    delays = ", ".join(f"{delay:.1f}s" for delay in result.delays)
    alive = min(result.alive, default=0)
    check = Check(
        "repeated PostgreSQL restarts",
        all(delay <= LISTEN_WITHIN for delay in result.delays) and alive == 4,
        f"{len(result.delays)} more restarts, {DATABASE_DOWN_FOR:g}s down each: the four runners "
        f"LISTEN again {delays} after each (limit {LISTEN_WITHIN:g}s, as after the first "
        f"restart); runners alive {alive}/4",
    )
    return Findings((check,), (("repeated restarts: LISTEN again after", delays),))


def _shutdown(name: str, result: ShutdownResult, extra: str, left_ok: bool) -> Findings:
    codes_ok = all(code == 0 for _, _, code in result.exits)
    slowest = max((elapsed for _, elapsed, _ in result.exits), default=float("inf"))
    check = Check(
        name,
        codes_ok and slowest < SHUTDOWN_LIMIT and left_ok,
        exits_detail(result.exits) + extra,
    )
    return Findings((check,), ((f"{name}: shutdown", exits_summary(result.exits)),))


def sigterm_during_work(result: ShutdownResult) -> Findings:
    """Each runner exited 0 in bounded time, leaving none of its executions running."""
    extra = f" (limit {SHUTDOWN_LIMIT:g}s); {result.left} of their executions left running"
    return _shutdown("SIGTERM during work", result, extra, result.left == 0)


def sigterm_at_end(result: ShutdownResult) -> Findings:
    """The same, idle."""
    return _shutdown("SIGTERM at the end", result, "", True)


def drain(result: DrainResult) -> Findings:
    """Reached only when every account was served: the wait itself is the check."""
    detail = f"all {result.seeded} accounts served, nothing running ({result.took:.1f}s)"
    return Findings((Check("drain", True, detail),))
