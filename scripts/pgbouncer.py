"""A throwaway PgBouncer in transaction pooling mode, in front of a PostgreSQL server.

Managed PostgreSQL is often reached through such a pooler, and under
transaction pooling a ``LISTEN`` is lost: each transaction may run on
another server connection. The tests and the stress run start one with::

    bouncer = PgBouncer(target_port=54329).start()   # bouncer.port
    ...
    bouncer.stop()

Every database name is passed through to the server at ``target_port`` as
user ``postgres``, whatever user the client names (``auth_type = any``).
PgBouncer refuses to run as root, so as root it runs as the ``postgres``
system user (Debian's ``pgbouncer`` package). Loopback only.

Standard library only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgBouncer", "binary"]

CONFIG = """\
[databases]
* = host=127.0.0.1 port={target_port} user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
"""


def binary() -> str | None:
    """The ``pgbouncer`` executable, or None when it is not installed."""
    return shutil.which("pgbouncer") or next(
        (str(p) for p in (Path("/usr/sbin/pgbouncer"),) if p.exists()), None
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgBouncer:
    """One PgBouncer process relaying ``127.0.0.1:port`` to the server at ``target_port``."""

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="planton-pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 10.0) -> PgBouncer:
        executable = binary()
        if executable is None:
            raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            CONFIG.format(target_port=self.target_port, port=self.port, folder=self.folder)
        )
        command = [executable, str(config)]
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            shutil.chown(config, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within {timeout:g}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
