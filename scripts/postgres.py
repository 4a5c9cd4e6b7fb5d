"""A throwaway PostgreSQL server for the tests, the demo, the stress run and the benchmarks.

The one place that starts, restarts and stops PostgreSQL; the shell scripts,
``stress/`` and ``benchmarks/`` all go through it::

    python3 scripts/postgres.py start   # prints the DATABASE_URL of a fresh server
    python3 scripts/postgres.py stop    # stops it and removes its data directory

or from Python: ``PostgresServer(port=54349).start()``. The port and data
directory default to ``PLANTON_PGPORT`` / ``PLANTON_PGROOT`` and the server
binaries to the newest ``/usr/lib/postgresql/*/bin`` (``PLANTON_PGBIN``
overrides). PostgreSQL refuses to run as root, so as root the server runs as
the ``postgres`` system user. It listens on the loopback address only, trusts
every local user and runs without fsync: never for data you want to keep.

Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["PostgresServer", "server_binaries"]

DEFAULT_PORT = 54329
SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
)


def server_binaries() -> Path | None:
    """The folder of ``pg_ctl`` and ``initdb``: ``PLANTON_PGBIN``, else the newest installed."""
    if os.environ.get("PLANTON_PGBIN"):
        return Path(os.environ["PLANTON_PGBIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: [int(part) for part in path.parent.name.split(".") if part.isdigit()],
    )
    return found[-1] if found else None


@dataclass
class PostgresServer:
    """One throwaway cluster on ``port`` with its files under ``root``."""

    port: int = field(default_factory=lambda: int(os.environ.get("PLANTON_PGPORT", DEFAULT_PORT)))
    root: Path = field(default_factory=lambda: Path(os.environ.get("PLANTON_PGROOT", "")))
    database: str = "planton"

    def __post_init__(self) -> None:
        if not str(self.root) or str(self.root) == ".":
            self.root = Path(f"/tmp/planton-postgres-{self.port}")
        self.root = Path(self.root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def options(self) -> str:
        """The server's command-line options (also what a restart passes again)."""
        return (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.root / 'socket'} {SERVER_OPTIONS}"
        )

    def start(self) -> str:
        """Start a fresh server (or keep the one running there) and return its URL."""
        if self.is_running():
            return self.url
        self._remove_files()
        (self.root / "socket").mkdir(parents=True)
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            for path in (self.data, self.root / "socket"):
                shutil.chown(path, "postgres")
        with open(self.root / "initdb.log", "w") as log:
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--no-sync", stdout=log,
            )  # fmt: skip
        self.pg_ctl("-l", str(self.root / "server.log"), "-w", "-t", "60", "-o", self.options,
                    "start")  # fmt: skip
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  self.database)  # fmt: skip
        return self.url

    def stop(self) -> None:
        """Stop the server, if one runs, and remove its files."""
        if self.data.is_dir():
            self.pg_ctl("-m", "fast", "-w", "stop", check=False)
        self._remove_files()

    def is_running(self) -> bool:
        if not (self.data / "postmaster.pid").exists():
            return False
        return self.pg_ctl("status", check=False) == 0

    def pg_ctl(self, *args: str, check: bool = True) -> int:
        """Run ``pg_ctl -D <data> ARGS`` as the server's owner; returns its exit code."""
        return self._run("pg_ctl", "-D", str(self.data), *args, check=check)

    def _run(
        self, program: str, *args: str, check: bool = True, stdout: IO[str] | None = None
    ) -> int:
        binaries = server_binaries()
        if binaries is None or not (binaries / program).exists():
            raise RuntimeError(
                "PostgreSQL server binaries not found (install postgresql or set PLANTON_PGBIN)"
            )
        command = [str(binaries / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed: {result.stderr.strip()}")
        return int(result.returncode)

    def _remove_files(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in {"start", "stop"}:
        print("usage: scripts/postgres.py start|stop", file=sys.stderr)
        return 2
    server = PostgresServer()
    try:
        if argv[0] == "start":
            print(server.start())
        else:
            server.stop()
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
