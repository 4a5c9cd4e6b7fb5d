"""The stress run's checks (stress/checks/): each passes on good data and fails on bad data.

Plain values in, verdicts out: no database, no process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from stress import checks, logs
from stress.checks.base import caught_by_outage
from stress.checks.faults import log_rate
from stress.records import (
    Ahead,
    CutShort,
    EndedExecution,
    Execution,
    LogVolume,
    Sample,
    Stranded,
)
from stress.results import (
    BlockedResult,
    DrainResult,
    FaultResult,
    KillResult,
    Outage,
    OverrideResult,
    PauseResult,
    PoolerResult,
    PoolerStretch,
    RepeatedRestartsResult,
    RestartResult,
    ShutdownResult,
    SteadyResult,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def at(offset: float) -> datetime:
    return T0 + timedelta(seconds=offset)


def verdicts(findings: checks.Findings) -> dict[str, bool]:
    return {check.name: check.ok for check in findings.checks}


def execution(
    pk: int, instruction: str, start: float, end: float | None, **extra: Any
) -> Execution:
    fields: dict[str, Any] = dict(task="send_user_email", hostname="r2.g1", failed=False)
    fields |= dict(terminated_at=None, terminated_reason=None) | extra
    return Execution(
        id=pk,
        instruction=instruction,
        started_at=at(start),
        ended_at=None if end is None else at(end),
        **fields,
    )


# -- the scenarios' checks ------------------------------------------------------------------


def steady(idle: int, bad: int, slow: int = 1) -> SteadyResult:
    return SteadyResult(at(0), at(12), 1200, idle, bad, slow, 10)


def test_steady_cadence_of_one_a_second_passes() -> None:
    findings = checks.steady(steady(idle=11, bad=12))
    assert findings.ok
    assert dict(findings.summary)["e-mails per second (steady)"] == "100"


def test_steady_cadence_too_high_or_a_second_slow_attempt_fails() -> None:
    assert verdicts(checks.steady(steady(idle=30, bad=3, slow=2))) == {
        "cadence idle_probe": False,
        "cadence bad_input_probe": False,
        "slow_probe first attempt": False,
    }


def pause(email_starts: tuple[float, ...], idle: tuple[float, ...], owed: int = 100) -> PauseResult:
    return PauseResult(
        paused=at(0),
        watched=at(4),
        watch=4.0,
        owed=owed,
        email_starts=tuple(at(t) for t in email_starts),
        last_start=at(max(email_starts, default=-0.1)),
        idle_attempts=tuple(at(t) for t in idle),
        resumed_after=0.3,
    )


def test_pause_stopping_work_within_its_delay_passes() -> None:
    assert checks.pause(pause(email_starts=(0.2, 0.9), idle=(-1.0, 1.5))).ok


def test_pause_with_work_started_late_or_nothing_owed_fails() -> None:
    assert not checks.pause(pause(email_starts=(0.2, 3.0), idle=(1.5,))).ok
    assert not checks.pause(pause(email_starts=(0.2,), idle=(2.5,))).ok
    assert not checks.pause(pause(email_starts=(0.2,), idle=(), owed=0)).ok


def override(after_grace: tuple[int, ...], starts: int = 50) -> OverrideResult:
    return OverrideResult(
        changes=((at(0), 2), (at(6), 10)),
        lowered_at=(at(0),),
        within_grace=(9, 5, 2),
        after_grace=after_grace,
        starts=starts,
    )


def test_override_respected_after_the_grace_period_passes() -> None:
    findings = checks.override(override((2,) * 20))
    assert findings.ok
    assert dict(findings.summary)["override 2: max sampled running"] == "2 (limit 2)"


def test_override_exceeded_or_without_work_fails() -> None:
    assert not checks.override(override((2,) * 19 + (3,))).ok
    assert not checks.override(override((2,) * 20, starts=0)).ok
    assert not checks.override(override((2,) * 5)).ok


def kill(
    duration: float, signalled: int = 2, reason: str = "maximum execution duration exceeded"
) -> KillResult:
    ended = tuple(EndedExecution(pk, at(0), at(duration), at(duration), reason) for pk in (1, 2))
    return KillResult("r1.g1", -9, at(0.5), ("7", "8"), ended, signalled, 2, ())


def test_kill_with_every_execution_terminated_in_time_passes() -> None:
    assert checks.kill(kill(duration=3.4)).ok


def test_kill_with_an_early_end_a_missing_signal_or_another_reason_fails() -> None:
    assert not checks.kill(kill(duration=2.0)).ok
    findings = checks.kill(kill(duration=3.4, signalled=1))
    assert not findings.ok
    assert findings.checks[0].examples  # the executions are shown
    assert not checks.kill(kill(duration=3.4, reason="cancelled")).ok


def restart(
    alive_after: int = 4, errors: int = 3, listening: int = 4, first: float = 1.0
) -> RestartResult:
    return RestartResult(
        outage=Outage(stopping=at(-0.2), down=at(0), up=at(3), alive_while_down=4),
        alive_after=alive_after,
        errors=tuple((f"r{n}.g1", errors) for n in range(1, 5)),
        first_start=at(3 + first),
        first_idle=at(3.5),
        stranded=(Stranded(5, "r2.g1", at(-1), at(5)),),
        listening=listening,
        relisten=4.0,
    )


def test_database_restart_survived_passes() -> None:
    findings = checks.database_restart(restart())
    assert findings.ok
    assert findings.checks[0].examples == ()


def test_database_restart_with_a_dead_runner_no_errors_logged_or_no_listener_fails() -> None:
    assert not checks.database_restart(restart(alive_after=3)).ok
    assert not checks.database_restart(restart(errors=0)).ok
    assert not checks.database_restart(restart(listening=3)).ok
    assert not checks.database_restart(restart(first=61)).ok


def test_repeated_restarts_pass_when_listening_again_in_time() -> None:
    assert checks.repeated_restarts(RepeatedRestartsResult((4.1, 4.0, 4.2), (4, 4, 4, 4))).ok
    assert not checks.repeated_restarts(RepeatedRestartsResult((4.1, float("inf")), (4, 4, 4))).ok
    assert not checks.repeated_restarts(RepeatedRestartsResult((4.1,), (4, 3))).ok


def shutdown(elapsed: float = 1.0, code: int | None = 0, left: int | None = 0) -> ShutdownResult:
    exits = (("r1.g1", 0.9, 0), ("r2.g1", elapsed, code))
    return ShutdownResult(exits, left, at(0))


def test_sigterm_with_clean_exits_in_time_passes() -> None:
    findings = checks.sigterm_during_work(shutdown())
    assert findings.ok
    assert dict(findings.summary)["SIGTERM during work: shutdown"] == "r1.g1 0.9s, r2.g1 1.0s"
    assert checks.sigterm_at_end(shutdown(left=None)).ok


def test_sigterm_too_slow_killed_or_leaving_work_fails() -> None:
    assert not checks.sigterm_during_work(shutdown(elapsed=36.0)).ok
    assert not checks.sigterm_during_work(shutdown(code=None)).ok
    assert not checks.sigterm_during_work(shutdown(left=1)).ok
    assert not checks.sigterm_at_end(shutdown(code=1, left=None)).ok


def test_drain_reports_what_was_served() -> None:
    assert "all 10 accounts served" in checks.drain(DrainResult(10, 3.0)).checks[0].detail


# -- the faults' checks -----------------------------------------------------------------------

EVERY_SECOND = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
LONE_BATCH = {"lone-schedule-holds-batch"}


def blocked(
    idle: tuple[float, ...] = EVERY_SECOND,
    held: tuple[tuple[str, float], ...] | None = (("blocking_probe", 6.5),),
    warned: int = 1,
    blocked_for: float = 6.5,
    bad: tuple[float, ...] = EVERY_SECOND,
) -> BlockedResult:
    return BlockedResult(
        start=at(0),
        end=at(7),
        attempts=(
            ("idle_probe", tuple(at(t) for t in idle)),
            ("bad_input_probe", tuple(at(t) for t in bad)),
        ),
        blocked_for=blocked_for,
        held=held,
        slow_warnings=(("r1.g2", warned), ("r2.g1", 0)),
        threshold=3.0,
        sent=500,
    )


def test_blocked_schedule_with_the_quiet_tasks_going_on_passes() -> None:
    findings = checks.blocked_schedule(blocked(), known=())
    assert findings.ok
    assert dict(findings.summary)["blocked schedule: longest gaps"] == (
        "idle_probe 1.00s, bad_input_probe 1.00s over a 7s block (limit 4s)"
    )


def test_blocked_schedule_starving_a_quiet_task_unnamed_or_not_blocking_fails() -> None:
    starved = checks.blocked_schedule(blocked(idle=(1.0, 5.5, 6.0)), known=LONE_BATCH)
    assert not starved.ok
    assert starved.checks[0].examples == ("      idle_probe not attempted for 4.50s from 12:00:01",)
    assert not checks.blocked_schedule(blocked(bad=(0.5, 6.5)), known=()).ok
    assert not checks.blocked_schedule(blocked(warned=0), known=()).ok
    assert not checks.blocked_schedule(blocked(blocked_for=1.0), known=()).ok


def test_blocked_schedule_starved_by_a_batch_holding_the_row_is_the_known_issue() -> None:
    holding = (("bad_input_probe", 6.0), ("blocking_probe", 6.5), ("idle_probe", 6.0))
    starved = blocked(idle=(0.5,), bad=(0.5,), held=holding)
    assert not checks.blocked_schedule(starved, known=()).ok
    findings = checks.blocked_schedule(starved, known=LONE_BATCH)
    assert findings.ok
    assert "(KNOWN ISSUE lone-schedule-holds-batch: its row was held)" in findings.checks[0].detail
    # A row held for a batch's budget only explains no starvation.
    briefly = blocked(idle=(0.5,), held=(("idle_probe", 1.0),))
    assert not checks.blocked_schedule(briefly, known=LONE_BATCH).ok
    assert not checks.blocked_schedule(blocked(idle=(0.5,), held=None), known=LONE_BATCH).ok


def volume(
    worker: int, *, app: int = 0, noisy: int = 0, first: int = 0, seconds: float = 3.5
) -> LogVolume:
    return LogVolume(
        runner="r1.g2",
        seconds=seconds,
        records=5,
        by_source=(
            ("known issue housekeeping-tracebacks", noisy),
            ("example_site.accounts.receivers [planton-worker]", app),
            ("django_planton [planton-worker]", worker),
        ),
        first_tracebacks=first,
    )


def fault(
    mode: str = "refuse",
    alive: int = 4,
    first: float | None = 1.0,
    ended: tuple[float | None, ...] = (-1.0, 0.5),
    warned: int = 0,
) -> FaultResult:
    return FaultResult(
        mode=mode,
        began=at(0),
        recovered=at(7),
        alive_during=alive,
        alive_after=4,
        logs=(volume(80, noisy=500, first=300, seconds=7.0),),
        settled=(volume(20, noisy=250),),
        errors=(("r1.g2", 20),),
        slow_warnings=(("r1.g2", warned),),
        running=tuple(range(len(ended))),
        ended=tuple((pk, None if t is None else at(7 + t)) for pk, t in enumerate(ended)),
        first_start=None if first is None else at(7 + first),
        first_idle=at(7.5),
    )


def test_refusing_database_survived_and_resumed_in_time_passes() -> None:
    findings = checks.relay_fault(fault())
    assert verdicts(findings) == {
        "refusing database": True,
        "log lines while refusing database": True,
    }
    assert dict(findings.summary)["refusing database: recovery"].startswith("1.00s")


def test_refusing_database_with_a_dead_runner_late_endings_or_no_work_after_fails() -> None:
    assert not checks.relay_fault(fault(alive=3)).ok
    assert not checks.relay_fault(fault(ended=(0.5, 11.0))).ok
    late = checks.relay_fault(fault(ended=(0.5, None)))
    assert late.checks[0].examples == ("      execution 1 still running or ended late: None",)
    # The back-off from a lost database may wait about the window again (7 s), plus 5 s.
    assert checks.relay_fault(fault(first=11.5)).ok
    assert not checks.relay_fault(fault(first=12.5)).ok
    assert not checks.relay_fault(fault(first=None)).ok


def test_unanswering_database_must_name_its_stuck_cycles() -> None:
    assert checks.relay_fault(fault(mode="blackhole", warned=2)).ok
    assert (
        verdicts(checks.relay_fault(fault(mode="blackhole", warned=0)))["unanswering database"]
        is False
    )


WHOLE = [volume(120, first=300, seconds=7.0)]  # the first burst: 17 lines/s over the window


def test_log_rate_bounds_the_librarys_lines_in_the_second_half_but_first_tracebacks() -> None:
    quiet, _ = log_rate("refusing database", WHOLE, [volume(30, app=400, first=100)])
    assert quiet.ok  # 30 lines in 3.5 s; first tracebacks and the application's lines aside
    assert "over the whole window: r1.g2 17.1" in quiet.detail
    assert "r1.g2 420 in 5 records (300 of first tracebacks)" in quiet.detail
    loud, figure = log_rate("refusing database", WHOLE, [volume(40)])
    assert not loud.ok  # 11.4 lines/s
    assert figure == "11.4 (r1.g2; limit 10)"
    assert not log_rate("refusing database", [], [])[0].ok


def test_log_rate_shows_a_known_issues_lines_apart() -> None:
    whole, settled = [volume(40, noisy=540, seconds=7.0)], [volume(10, noisy=270)]
    check, _ = log_rate("refusing database", whole, settled)
    assert check.ok
    assert "KNOWN ISSUE housekeeping-tracebacks, not bounded: r1.g2 540 lines" in check.detail


def stretch(
    listen: str = "pgbouncer",
    deaf: int = 1,
    listeners: int = 0,
    starts: int = 300,
    most: int = 10,
    code: int | None = 0,
) -> PoolerStretch:
    labels = tuple(f"r{n}.g3" for n in range(1, 5))
    return PoolerStretch(
        listen=listen,
        labels=labels,
        start=at(0),
        end=at(7),
        deaf=tuple((label, deaf) for label in labels),
        listeners=listeners,
        starts=starts,
        most_running=most,
        limit=10,
        exits=tuple((label, 0.5, code) for label in labels),
    )


def test_pooler_with_every_listener_deaf_and_said_once_passes() -> None:
    direct = stretch(listen="direct", deaf=0, listeners=4)
    findings = checks.pooler(PoolerResult((stretch(), direct), ""))
    assert verdicts(findings) == {
        "PgBouncer, listener pgbouncer": True,
        "PgBouncer, listener direct": True,
    }
    assert (
        "deaf-listener warnings r1.g3 1" in dict(findings.summary)["PgBouncer, listener pgbouncer"]
    )


def test_pooler_silent_twice_said_or_without_work_fails() -> None:
    for bad in (
        stretch(deaf=0),
        stretch(deaf=2),
        stretch(starts=0),
        stretch(most=11),
        stretch(code=1),
    ):
        findings = checks.pooler(PoolerResult((bad,), "pgbouncer log line"))
        assert not findings.ok
        assert findings.checks[0].examples == ("      pgbouncer: pgbouncer log line",)
    assert not checks.pooler(PoolerResult((stretch(listen="direct", deaf=1, listeners=4),), "")).ok
    assert not checks.pooler(PoolerResult((stretch(listen="direct", deaf=0, listeners=3),), "")).ok


LOG = (
    "2026-12-07 15:03:11,730 ERROR django_planton [planton-worker_1] Task x: failed 1\n"
    "Traceback (most recent call last):\n"
    '  File "x.py", line 1, in f\n'
    "2026-12-07 15:03:12,000 ERROR django_planton [planton-housekeeping] Housekeeping failed\n"
    "\tIs the server running?\n"
    "2026-12-07 15:03:12,500 ERROR django_planton [planton-worker_0] Task x: failed 2\n"
    "Traceback (most recent call last):\n"
    '  File "x.py", line 1, in f\n'
)


def test_log_volume_counts_lines_by_source_and_sets_first_tracebacks_apart() -> None:
    found = logs.volume("r1.g2", LOG, 2.0, noisy={})
    assert (found.records, found.lines, found.first_tracebacks) == (3, 8, 2)
    # A message's own lines count; "Task x: failed 2" (numbers aside, the same error)
    # repeats its traceback, which counts in full.
    assert dict(found.by_source) == {
        "django_planton [planton-worker]": 4,
        "django_planton [planton-housekeeping]": 2,
    }
    assert found.lines_of(("django_planton",)) == 6
    assert found.lines_of(("django.dispatch",)) == 0
    assert found.rate(3) == 1.5
    assert logs.matching({"r1.g2": LOG}, "Housekeeping", "failed") == (("r1.g2", 1),)


def test_log_volume_sets_apart_a_first_traceback_written_after_its_repeats() -> None:
    text = (
        "2026-12-07 15:47:51,301 ERROR django_planton [planton-receiver_1] A receiver failed: "
        "refused\n"
        "\tIs the server running? (the same error 3 times; traceback logged the first time)\n"
        "2026-12-07 15:47:51,292 ERROR django_planton [planton-receiver_3] A receiver failed: "
        "refused\n"
        "\tIs the server running?\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
    )
    found = logs.volume("r2.g1", text, 1.0, noisy={})
    assert (found.lines, found.first_tracebacks) == (6, 2)
    assert found.lines_of(("django_planton",)) == 4


def test_log_volume_counts_a_traceback_shown_before_as_a_repeat() -> None:
    earlier = LOG.split("2026-12-07 15:03:12,000")[
        0
    ]  # the first "Task x: failed" and its traceback
    later = "2026-12-07 15:03:12,500" + LOG.split("2026-12-07 15:03:12,500")[1]
    found = logs.volume("r1.g2", later, 1.0, noisy={}, before=earlier)
    assert (found.lines, found.first_tracebacks) == (3, 0)


def test_log_volume_puts_a_known_issues_records_apart() -> None:
    noisy = {"housekeeping-tracebacks": (("django_planton", "planton-housekeeping", "Housek"),)}
    found = logs.volume("r1.g2", LOG, 2.0, noisy=noisy)
    assert found.known() == (("housekeeping-tracebacks", 2),)
    assert found.lines_of(("django_planton",)) == 4


# -- the checks over the whole run ----------------------------------------------------------


def test_no_overlap_passes_on_back_to_back_executions() -> None:
    findings = checks.no_overlap([execution(1, "7", 0, 1), execution(2, "7", 1, 2)])
    assert findings.ok
    assert dict(findings.summary)["dispatched twice while active"] == "0"


def test_no_overlap_fails_on_an_overlap_or_an_execution_left_running() -> None:
    findings = checks.no_overlap([execution(1, "7", 0, 1.5), execution(2, "7", 1, 2)])
    assert not findings.ok
    assert "overlap: send_user_email '7'" in findings.checks[0].examples[0]
    assert not checks.no_overlap([execution(1, "7", 0, None)]).ok


ACCOUNTS = [(7, "a@example.com", True), (8, "b@example.com", True)]


def test_accounts_served_once_and_mailed_once_pass() -> None:
    email = [execution(1, "7", 0, 1), execution(2, "8", 0, 1)]
    mails = {"a@example.com": 1, "b@example.com": 1}
    assert checks.accounts(email, ACCOUNTS, mails, "r1.g1", ()).ok


def test_accounts_mailed_twice_after_a_termination_pass() -> None:
    email = [
        execution(1, "7", 0, 3, hostname="r1.g1", terminated_at=at(3)),
        execution(2, "7", 4, 5),
        execution(3, "8", 0, 1),
    ]
    mails = {"a@example.com": 2, "b@example.com": 1}
    assert checks.accounts(email, ACCOUNTS, mails, "r1.g1", ("7",)).ok


def test_accounts_unserved_unmailed_or_mailed_twice_without_a_fault_fail() -> None:
    email = [execution(1, "7", 0, 1), execution(2, "8", 0, 1)]
    unserved = [(7, "a@example.com", True), (8, "b@example.com", False)]
    mails = {"a@example.com": 1, "b@example.com": 1}
    assert verdicts(checks.accounts(email, unserved, mails, "", ())) == {
        "every account processed": False,
        "every account e-mailed": True,
    }
    twice = {"a@example.com": 2, "b@example.com": 1}
    assert not checks.accounts(email, ACCOUNTS, twice, "", ()).ok
    unknown = {**mails, "c@example.com": 1}
    assert not checks.accounts(email, ACCOUNTS, unknown, "", ()).ok
    # The killed runner's account was served by no other process.
    killed = [execution(1, "7", 0, 1, hostname="r1.g1"), execution(2, "8", 0, 1)]
    assert not checks.accounts(killed, ACCOUNTS, mails, "r1.g1", ("7",)).ok


def test_running_at_starts_counts_an_end_at_a_start_as_gone() -> None:
    spans = [(at(0), at(5)), (at(5), at(10)), (at(6), None)]
    assert checks.running_at_starts(spans) == [(at(0), 1), (at(5), 1), (at(6), 2)]


def test_limit_at_follows_the_timeline() -> None:
    limits = [(at(0), 10), (at(5), 2), (at(10), 10)]
    assert [checks.limit_at(limits, at(t)) for t in (-1, 0, 7, 10)] == [10, 10, 2, 10]


def concurrency(
    email: Sequence[Execution],
    samples: Sequence[Sample] = (),
    lowered: Sequence[datetime] = (),
) -> checks.Findings:
    limits = [(at(-100), 3), (at(10), 1), (at(20), 3)]
    samples = samples or [Sample(at(1), 2, 3), Sample(at(2), 3, 3)]
    return checks.concurrency(email, samples, 0, limits, lowered)


def test_concurrency_within_the_limit_in_force_passes() -> None:
    email = [execution(n, str(n), 0, 12) for n in range(3)] + [execution(9, "9", 12, 13)]
    findings = concurrency(email, lowered=(at(10),))
    assert findings.ok
    assert dict(findings.summary)["max concurrency: sampled / swept"].startswith("3 / 3 ")


def test_concurrency_over_the_limit_fails_swept_and_sampled() -> None:
    swept = concurrency([execution(n, str(n), 11 + n, 15) for n in range(2)])
    assert verdicts(swept) == {"concurrency (sampled)": True, "concurrency (swept)": False}
    assert "over the limit: 2 running" in swept.checks[0].examples[0]
    sampled = concurrency([], samples=[Sample(at(30), 4, 3)])
    assert verdicts(sampled) == {"concurrency (sampled)": False, "concurrency (swept)": True}


def test_concurrency_samples_over_a_lowered_limit_in_the_grace_period_pass() -> None:
    assert concurrency([], samples=[Sample(at(11), 3, 1)], lowered=(at(10),)).ok
    assert not concurrency([], samples=[Sample(at(13), 3, 1)], lowered=(at(10),)).ok


def test_idle_gaps_of_a_second_pass_and_shorter_ones_fail() -> None:
    assert checks.idle_gaps([(at(0), "r1.g1"), (at(1.0), "r2.g1")]).ok
    findings = checks.idle_gaps([(at(0), "r1.g1"), (at(0.5), "r2.g1")])
    assert not findings.ok
    assert "attempts 0.500s apart: r1.g1" in findings.checks[0].examples[0]
    assert not checks.idle_gaps([]).ok


REASONS = [f"UnexpectedTaskInstructionsError: bad instructions: reason {n}" for n in range(5)]


def test_bad_input_rejected_in_many_ways_and_never_dispatched_passes() -> None:
    assert checks.bad_input([(at(0), "r1.g1")], REASONS, [execution(1, "7", 0, 1)]).ok


def test_bad_input_dispatched_or_rejected_too_uniformly_fails() -> None:
    dispatched = [execution(1, "7", 0, 1, task="bad_input_probe")]
    assert not checks.bad_input([], REASONS, dispatched).ok
    assert not checks.bad_input([], REASONS[:4], []).ok


def test_bad_gaps_pass_at_the_delay_and_fail_below() -> None:
    assert checks.bad_gaps([(at(0), "r1.g1"), (at(1.0), "r2.g1")]).ok
    findings = checks.bad_gaps([(at(0), "r1.g1"), (at(0.1), "r2.g1")])
    assert not findings.ok
    assert dict(findings.summary)["bad_input_probe attempts < 0.9s apart"] == "1"


def test_slow_probe_not_attempted_again_after_restarts_passes() -> None:
    assert checks.slow_after_restarts([at(0)], [at(40)]).ok
    assert checks.slow_after_restarts([at(0), at(300)], [at(40)]).ok


def test_slow_probe_attempted_too_soon_or_without_a_restart_fails() -> None:
    assert not checks.slow_after_restarts([at(0), at(50)], [at(40)]).ok
    assert not checks.slow_after_restarts([at(0)], [at(400)]).ok
    assert not checks.slow_after_restarts([], [at(40)]).ok


def test_cycles_only_reports() -> None:
    findings = checks.cycles(12, [execution(1, "7", 0, 1), execution(2, "8", 0, 1)])
    assert findings.checks == ()
    assert dict(findings.summary)["maintenance_task row updates"].startswith("12 (~ committed")


# -- the runners' clock -----------------------------------------------------------------------


def test_stored_times_within_the_run_pass() -> None:
    inside = [execution(1, "7", 0, 1), execution(2, "8", -0.5, 100.5, terminated_at=at(100.5))]
    findings = checks.stored_times(inside, at(0), at(100))
    assert findings.ok
    assert findings.checks[0].examples == ()


def test_stored_times_outside_the_run_fail_and_name_the_runner() -> None:
    ahead = execution(1, "7", 600, 601, hostname="r3.g1")
    behind = execution(2, "8", -599, 2, hostname="r4.g1", terminated_at=at(2))
    findings = checks.stored_times([ahead, behind, execution(3, "9", 1, 2)], at(0), at(100))
    assert not findings.ok
    assert "3 of their started_at/ended_at/terminated_at outside it" in findings.checks[0].detail
    assert findings.checks[0].examples == (
        "      executions of r3.g1 (clock +600s): 2 times outside the run, e.g. started_at "
        "500.0s after it ended; by field {'started_at': 1, 'ended_at': 1}",
        "      executions of r4.g1 (clock -600s): 1 times outside the run, e.g. started_at "
        "599.0s before it began; by field {'started_at': 1}",
    )


def ahead(task: str, seconds: float) -> Ahead:
    return Ahead(at(0), task, seconds)


def test_next_attempts_within_each_tasks_longest_delay_pass() -> None:
    findings = checks.next_attempts(
        [ahead("idle_probe", 1.0), ahead("slow_probe", 299.9), ahead("send_user_email", 30.5)]
    )
    assert findings.ok
    summary = dict(findings.summary)
    assert summary["runners under a skewed clock"] == "r3 +600s, r4 -600s"
    assert summary["next_attempt_at ahead of now (max)"].startswith("idle_probe +1.0s")


def test_next_attempts_too_far_ahead_unknown_or_unsampled_fail() -> None:
    findings = checks.next_attempts([ahead("idle_probe", 0.9), ahead("idle_probe", 601.0)])
    assert not findings.ok
    assert "idle_probe: next_attempt_at +601.0s ahead" in findings.checks[0].examples[0]
    assert not checks.next_attempts([ahead("slow_probe", 900.0)]).ok
    assert not checks.next_attempts([ahead("a_new_task", 1.0)]).ok
    assert not checks.next_attempts([]).ok


STALL = ((at(0), at(7)),)
STALLED = {"clock-ahead-after-stall"}


def test_next_attempts_pushed_by_a_stall_are_the_known_issue() -> None:
    pushed = [ahead("idle_probe", 0.5), Ahead(at(7.2), "idle_probe", 7.9)]
    assert not checks.next_attempts(pushed, STALL, ()).ok
    findings = checks.next_attempts(pushed, STALL, STALLED)
    assert findings.ok
    assert "KNOWN ISSUE clock-ahead-after-stall: 1 samples" in findings.checks[0].detail
    # Further than the stall's length, or long after it: not explained.
    assert not checks.next_attempts([Ahead(at(7.2), "idle_probe", 10.5)], STALL, STALLED).ok
    assert not checks.next_attempts([Ahead(at(30), "idle_probe", 7.9)], STALL, STALLED).ok
    assert not checks.next_attempts([Ahead(at(7.2), "idle_probe", 7.9)], (), STALLED).ok


def test_cut_short_none_passes_even_with_terminations() -> None:
    terminated = [execution(1, "7", 0, 3, hostname="r1.g1", terminated_at=at(3))]
    findings = checks.cut_short([], terminated)
    assert findings.ok
    assert "{'r1': 1}" in findings.checks[0].detail


def test_cut_short_fails_and_names_the_runner() -> None:
    findings = checks.cut_short([CutShort(at(5), "r2.g1", "17")], [])
    assert not findings.ok
    assert findings.checks[0].examples == (
        "      execution 17 of r2.g1 was terminated while its receiver worked (seen at 12:00:05)",
    )
    assert dict(findings.summary)["terminated while at work"] == "1 (and 0 across outages, allowed)"


OUTAGE = ((at(2), at(6)),)


def test_caught_by_outage_is_terminated_by_its_maximum_duration_across_one() -> None:
    across = execution(17, "7", 0, 6.5, terminated_at=at(6.5))
    assert caught_by_outage(across, OUTAGE)
    assert not caught_by_outage(across, ())
    assert not caught_by_outage(execution(17, "7", 0, 6.5), OUTAGE)  # not terminated
    early = execution(17, "7", 0, 2.5, terminated_at=at(2.5))  # before its 3 s
    assert not caught_by_outage(early, OUTAGE)
    after = execution(17, "7", 7.5, 11, terminated_at=at(11))  # started after the outage
    assert not caught_by_outage(after, OUTAGE)


def test_cut_short_across_an_outage_is_allowed_and_counted() -> None:
    across = [execution(17, "7", 0, 6.5, hostname="r2.g1", terminated_at=at(6.5))]
    events = [CutShort(at(6.6), "r2.g1", "17")]
    assert not checks.cut_short(events, across).ok
    findings = checks.cut_short(events, across, OUTAGE)
    assert findings.ok
    assert dict(findings.summary)["terminated while at work"] == "0 (and 1 across outages, allowed)"


def test_accounts_served_after_a_termination_across_an_outage_pass() -> None:
    email = [
        execution(1, "7", 0, 6.5, terminated_at=at(6.5)),  # its receiver still sent the e-mail
        execution(2, "8", 0, 1),
    ]
    mails = {"a@example.com": 1, "b@example.com": 1}
    findings = checks.accounts(email, ACCOUNTS, mails, "", (), OUTAGE)
    assert findings.ok
    assert "1 served by a receiver that finished after" in findings.checks[0].detail
    assert not checks.accounts(email, ACCOUNTS, mails, "", ()).ok  # no outage: unexplained


def test_late_starts_fail_unless_the_known_issue() -> None:
    assert checks.late_starts([], known=()).ok
    events = [CutShort(at(5), "r2.g1", "17")]
    findings = checks.late_starts(events, known=())
    assert not findings.ok
    assert findings.checks[0].examples == (
        "      execution 17 had ended before r2.g1's receiver started (seen at 12:00:05)",
    )
    tolerated = checks.late_starts(events, known={"receivers-after-termination"})
    assert tolerated.ok
    assert "KNOWN ISSUE receivers-after-termination" in tolerated.checks[0].detail
    assert dict(tolerated.summary)["receivers for ended executions"] == "1"
