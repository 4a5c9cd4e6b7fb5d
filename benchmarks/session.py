"""Running one measured child process, keeping its log, collecting what failed.

Every measured run is a fresh ``python -m benchmarks.workloads NAME JSON``
(so peak memory is per run and nothing warms up across runs); this module
is the orchestrator's only way of starting one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import run_problems
from .databases import ROOT, Database, child_env
from .protocol import Result, decode
from .report import progress

#: How long past its own timeout a child may run before it is killed.
KILL_GRACE = 120
#: How many lines of a failed child's log are shown on stderr.
LOG_TAIL = 15


@dataclass
class Session:
    """Runs children, keeps their logs in ``log_dir``, collects failures."""

    log_dir: Path
    failures: list[str] = field(default_factory=list)
    runs: int = 0

    def run(
        self,
        database: Database,
        workload: str,
        params: Mapping[str, Any],
        *,
        label: str,
        env: Mapping[str, str] | None = None,
    ) -> Result | None:
        """Run one workload in a child; its result, or None when it printed none.

        A result whose run failed in any way (its own checks, a non-zero
        exit) carries that in ``problems``, so callers need look nowhere else.
        """
        self.runs += 1
        log = self.log_dir / f"{self.runs:03d}-{database.name}-{workload}.log"
        started = time.monotonic()
        stdout, returncode = self._child(database, workload, params, log, env or {})
        elapsed = time.monotonic() - started
        result = decode(stdout)
        problems = run_problems(result, returncode, str(log))
        if result is not None:
            result["problems"] = problems
        status = "ok" if not problems else "FAILED: " + "; ".join(problems)
        progress(f"  {database.name:<10} {label:<50} {elapsed:5.1f} s  {status}")
        if problems:
            self.failures.append(f"{database.name} {label}: {'; '.join(problems)}")
            for line in log.read_text().strip().splitlines()[-LOG_TAIL:]:
                progress(f"      | {line}")
        return result

    def _child(
        self,
        database: Database,
        workload: str,
        params: Mapping[str, Any],
        log: Path,
        env: Mapping[str, str],
    ) -> tuple[str, int | None]:
        """The child's stdout and exit code; its stderr goes to ``log``. None: killed."""
        command = [sys.executable, "-m", "benchmarks.workloads", workload, json.dumps(params)]
        with log.open("w") as stderr:
            try:
                process = subprocess.run(
                    command,
                    cwd=ROOT,
                    env={**child_env(database), **env},
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    timeout=params.get("timeout", 600) + KILL_GRACE,
                )
            except subprocess.TimeoutExpired:
                return "", None  # killed; reported as a run without a result
        return process.stdout, process.returncode
