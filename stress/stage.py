"""The stage the scenarios play on: PostgreSQL, the relay, the connection, the runners, the sampler.

:func:`staged` sets it all up and, whatever happens, takes it all down again,
each part on its own so that one failing step does not leave the others
running. :class:`Stage` also offers the few waits every scenario needs.

The runners reach PostgreSQL through a :class:`~scripts.relay.Relay` of the
stage, so that a scenario can make the database refuse connections or stop
answering (``stage.relay.set_mode``) for the runners only; the stress run's
own connections (:mod:`stress.database`, the sampler, the set-up commands)
go to PostgreSQL directly and keep measuring meanwhile.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from scripts import clockshift
from scripts.postgres import PostgresServer
from scripts.relay import Relay
from stress import database, logs
from stress.config import EMAIL_TASK, PGPORT, PGROOT, WORK, Profile, skewed_runners
from stress.database import Database
from stress.fleet import Fleet, manage
from stress.records import now
from stress.sampler import Sampler

T = TypeVar("T")


def wait_for(what: str, predicate: Callable[[], T | None], timeout: float) -> T:
    """Poll ``predicate`` every 50 ms until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)


@dataclass
class Stage:
    profile: Profile
    server: PostgresServer
    url: str  # PostgreSQL itself: the stress run's own connections
    relay: Relay  # what the runners connect to (fleet.database_url)
    db: Database
    fleet: Fleet
    sampler: Sampler
    say: Callable[[str], None]
    began: datetime  # the database's time before any runner started
    seeded: int = 0  # accounts seeded so far, the top-ups included

    def seed(self, count: int) -> None:
        manage(self.url, "seed_accounts", "--count", str(count))
        self.seeded += count
        self.say(f"Seeded {count} account(s) ({self.seeded} in all)")

    def ensure_backlog(self) -> None:
        """Top the accounts owed up to the profile's backlog: every scenario runs under load."""
        owed = database.owed(self.db)
        if owed < self.profile.backlog:
            self.seed(self.profile.backlog - owed)

    def wait_for_work(self, timeout: float = 30.0) -> None:
        """Until send_user_email is busy: an execution started within the last half second."""

        def busy() -> bool:
            latest = database.latest_start(self.db, EMAIL_TASK)
            return latest is not None and now() - latest < timedelta(seconds=0.5)

        wait_for("send_user_email at work", busy, timeout)

    def log_offsets(self) -> dict[str, int]:
        """Each current runner's log size: where what it logs from now on starts."""
        return {
            runner.label: runner.log.stat().st_size if runner.log.exists() else 0
            for runner in self.fleet.current()
        }

    def logs_between(
        self, start: dict[str, int], end: dict[str, int] | None = None
    ) -> dict[str, str]:
        """What each current runner logged between two :meth:`log_offsets` (None: until now).

        A runner started in between (not in ``start``) counts from its first line.
        """
        return {
            runner.label: logs.appended(
                runner.log, start.get(runner.label, 0), (end or {}).get(runner.label)
            )
            for runner in self.fleet.current()
        }

    def grep_logs(self, needles: list[str]) -> int:
        """How many of ``needles`` appear in the runners' log files."""
        text = "\n".join(
            path.read_text(errors="replace") for path in sorted((WORK / "logs").glob("*.log"))
        )
        return sum(1 for needle in needles if needle in text)


def relayed(url: str, port: int) -> str:
    """``url`` with its port replaced: the same database, reached through another port."""
    return url.replace(f":{PGPORT}/", f":{port}/", 1)


@contextlib.contextmanager
def staged(profile: Profile, say: Callable[[str], None]) -> Iterator[Stage]:
    """A fresh work folder and PostgreSQL, migrated and seeded, with the sampler running.

    No runner is started yet: the first scenario starts them.
    """
    server = PostgresServer(port=PGPORT, root=PGROOT)
    undo: list[tuple[str, Callable[[], Any]]] = []
    fleet: Fleet | None = None
    try:
        if WORK.exists():
            shutil.rmtree(WORK)
        (WORK / "logs").mkdir(parents=True)
        (WORK / "mail").mkdir()
        say(f"Profile {profile.name}; work files in {WORK}")
        library = clockshift.build()
        say(f"Runners under a skewed clock: {skewed_runners()} (preloading {library})")
        server.stop()  # a server left over by an interrupted run
        undo.append(("PostgreSQL", server.stop))
        url = server.start()
        say(f"PostgreSQL at {url} (data in {PGROOT})")
        manage(url, "migrate", "--verbosity", "0")
        relay = Relay(("127.0.0.1", PGPORT)).start()
        undo.append(("the relay", relay.stop))
        say(f"Runners connect through a relay on port {relay.port}")
        db = Database(url)
        undo.append(("the connection", db.close))
        fleet = Fleet(relayed(url, relay.port), say, clock_library=library)
        undo.append(("the runners", fleet.stop_everything))
        began = database.now(db)
        stage = Stage(profile, server, url, relay, db, fleet, Sampler(url), say, began)
        stage.seed(profile.accounts)
        stage.sampler.start()
        undo.append(("the sampler", stage.sampler.stop))
        yield stage
    finally:
        for what, step in reversed(undo):
            try:
                step()
            except BaseException as error:
                print(f"Stopping {what} failed: {error!r}", file=sys.stderr)
        left = fleet.left_alive() if fleet else []
        say(f"Cleaned up: PostgreSQL stopped; runner processes left: {left or 'none'}")
