"""The databases the children measure: a throwaway PostgreSQL and a SQLite file.

PostgreSQL is started (and stopped) through ``scripts/postgres.py``, on a
port of its own (``PLANTON_PGPORT``, default 54339) so the test server on
54329 is left alone; ``--postgres-url`` uses an existing one instead. The
SQLite file lives in ``/dev/shm`` when there is one, so the disk does not
set its pace. Both are migrated before anything is measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts.postgres import PostgresServer

from .report import progress

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PGPORT = 54339


class DatabaseSetupError(Exception):
    """A database could not be started or migrated; the run fails without measuring."""


@dataclass(frozen=True)
class Database:
    """A database a child is pointed at, by ``DATABASE_URL``."""

    name: str
    url: str


@dataclass(frozen=True)
class Databases:
    """What one benchmark run measures on; ``sqlite`` is None with ``--no-sqlite``."""

    postgres: Database
    sqlite: Database | None

    def all(self) -> list[Database]:
        return [self.postgres] + ([self.sqlite] if self.sqlite else [])


def child_env(database: Database) -> dict[str, str]:
    """The environment of a child process (workload or ``migrate``) for ``database``."""
    return {
        **os.environ,
        "DATABASE_URL": database.url,
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
    }


def bench_postgres() -> PostgresServer:
    """The benchmarks' own server: ``PLANTON_PGPORT`` / ``PLANTON_PGROOT`` or their defaults."""
    port = int(os.environ.get("PLANTON_PGPORT", DEFAULT_PGPORT))
    root = os.environ.get("PLANTON_PGROOT", f"/tmp/planton-bench-postgres-{port}")
    return PostgresServer(port=port, root=Path(root))


def migrate(database: Database) -> None:
    """Create the example site's and the scheduler's tables in ``database``."""
    command = [sys.executable, "-m", "django", "migrate", "--verbosity", "0"]
    try:
        subprocess.run(command, cwd=ROOT, env=child_env(database), check=True)
    except subprocess.CalledProcessError as error:
        raise DatabaseSetupError(f"{' '.join(command)} exited {error.returncode}") from error


@contextmanager
def databases(*, postgres_url: str | None, sqlite: bool) -> Iterator[Databases]:
    """Start (unless given a URL) and migrate the databases; stop and remove them after."""
    server = None if postgres_url else bench_postgres()
    shm = Path("/dev/shm")
    sqlite_dir = Path(tempfile.mkdtemp(prefix="planton-bench-", dir=shm if shm.is_dir() else None))
    try:
        if server is not None:
            progress("Starting PostgreSQL...")
            try:
                postgres_url = server.start()
            except RuntimeError as error:
                raise DatabaseSetupError(f"PostgreSQL did not start: {error}") from error
        assert postgres_url is not None
        found = Databases(
            Database("postgresql", postgres_url),
            Database("sqlite", f"sqlite:///{sqlite_dir / 'bench.sqlite3'}") if sqlite else None,
        )
        for database in found.all():
            migrate(database)
        yield found
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(sqlite_dir, ignore_errors=True)
