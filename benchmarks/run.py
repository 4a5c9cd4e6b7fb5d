"""Run every workload and print the table: ``python -m benchmarks [--quick]``.

This process only orchestrates: it starts a throwaway PostgreSQL (on its own
port, so the test server is left alone), makes a SQLite file, migrates both,
and runs each measured variant in a fresh child process
(:mod:`benchmarks.workloads`), alternating the drain variants so that a noisy
neighbour hurts all of them alike. It exits non-zero when a run failed to
drain or a correctness check failed; figures are printed, never asserted.
``--only SECTION`` runs one section (repeatable), for working on it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import sections
from .checks import Target
from .databases import DatabaseSetupError, databases
from .machine import header_lines
from .plan import FULL, QUICK
from .report import emit, load_average, target_lines
from .session import Session

#: The sections, in the order they run and print.
SECTIONS = ("drain", "refill", "backoff", "idle", "executors", "scale")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options of the README's table; ``PLANTON_*`` settings come from the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="the short form for CI (< 2 minutes)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--prepared",
        action="store_true",
        help="add a drain variant with psycopg server-side binding and prepared "
        "statements (Django leaves them off)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--postgres-url",
        help="use this PostgreSQL database instead of starting one "
        "(its accounts and scheduler tables are emptied!)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the plan (or the sections of ``--only``), print the report; 1 when a run failed."""
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    session = Session(Path(tempfile.mkdtemp(prefix="planton-bench-logs-")))
    try:
        with databases(postgres_url=args.postgres_url, sqlite=not args.no_sqlite) as found:
            emit(header_lines("quick" if args.quick else "full", found.postgres.url))
            runs: dict[str, Callable[[], list[Target]]] = {
                "drain": lambda: sections.drain_section(
                    session, found, plan, prepared=args.prepared
                ),
                "refill": lambda: sections.refill_section(session, found, plan),
                "backoff": lambda: sections.backoff_section(session, found, plan),
                "idle": lambda: sections.idle_section(session, found, plan),
                "executors": lambda: sections.executors_section(session, found, plan),
                "scale": lambda: sections.scale_section(session, found, plan),
            }
            targets: list[Target] = []
            for name in SECTIONS:
                if not args.only or name in args.only:
                    targets += runs[name]()
            emit(target_lines(targets))
            emit()
    except DatabaseSetupError as error:
        session.failures.append(str(error))

    elapsed = time.monotonic() - started
    if session.failures:
        emit(
            f"FAILED ({len(session.failures)}), after {elapsed:.0f} s; "
            f"child logs in {session.log_dir}:"
        )
        emit([f"  {failure}" for failure in session.failures])
        return 1
    emit(
        f"All {session.runs} runs drained and passed their checks, in {elapsed:.0f} s "
        f"(load average {load_average()} at the end)."
    )
    shutil.rmtree(session.log_dir, ignore_errors=True)
    return 0
