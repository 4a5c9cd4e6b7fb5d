"""The header of the report: the machine and the software the figures come from.

Figures are only comparable on the same machine and versions, so the
report says which they were.
"""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib import metadata
from pathlib import Path

import psycopg

from .nodejs import versions_line
from .report import load_average


def cpu_model() -> str:
    """The processor's name, from ``/proc/cpuinfo`` on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_version(url: str) -> str:
    """Asked of the server itself, since that is the one the figures come from."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def header_lines(run: str, postgres_url: str | None) -> list[str]:
    """The first lines of the report: which run, on what, with which settings."""
    workers = int(os.environ.get("PLANTON_MAX_WORKERS", "4"))
    return [
        f"django-planton benchmarks ({run} run)",
        *machine_lines(postgres_url),
        f"settings: benchmarks.settings (DEBUG off, client-side binding, no prepared "
        f"statements unless said), PLANTON_MAX_WORKERS={workers}",
        "",
    ]


def machine_lines(postgres_url: str | None) -> list[str]:
    """The machine, its load at the start, and the versions of everything measured."""
    versions = [
        f"Python {platform.python_version()}",
        f"Django {metadata.version('django')}",
        f"psycopg {metadata.version('psycopg')}",
        f"PostgreSQL {postgres_version(postgres_url) if postgres_url else 'not run'}",
        f"SQLite {sqlite3.sqlite_version}",
        versions_line(),
    ]
    return [
        f"machine:  {os.cpu_count()} cores, {cpu_model()}, {platform.system()} "
        f"{platform.release()}, load average {load_average()} at start",
        f"software: {', '.join(versions)}",
    ]
