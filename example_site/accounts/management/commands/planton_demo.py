"""``python manage.py planton_demo``: run the accounts tasks in this process until all work is done.

``run_planton`` runs until it is stopped; a demo should stop by itself and say
what happened. So this drives :class:`~django_planton.runner.Runner` directly
(the same class ``run_planton`` drives), watches the database, and stops the
runner once every account has its e-mail, every old deleted account is purged
and no execution runs any more.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import datetime
from typing import Any

from django.core import mail
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_planton.executors import executor_for
from django_planton.models import MaintenanceTask
from django_planton.runner import Runner
from django_planton.signals import task_dispatched

from ...progress import Snapshot, progress_line, take_snapshot
from ...tasks import purge_deleted_accounts, send_user_email

POLL_SECONDS = 0.2
# Without a terminal (CI logs) the progress line is printed this often instead of redrawn.
PLAIN_PROGRESS_SECONDS = 2.0


def positive_seconds(value: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive number of seconds")
    return seconds


class Command(BaseCommand):
    help = (
        "Run send_user_email and purge_deleted_accounts in this process, with a progress "
        "line, until all their work is done; then print a summary."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            default=300.0,
            help="Give up, exiting non-zero, after this many seconds (default 300).",
        )

    def handle(self, *, timeout: float, **options: Any) -> None:
        tasks = [send_user_email, purge_deleted_accounts]
        since = timezone.now()
        before = take_snapshot(tasks, since=since)
        if before.finished:
            raise CommandError("No work to do: create some with `manage.py seed_accounts` first.")
        self.stdout.write(
            f"{before.owed} account(s) await their welcome e-mail, {before.purgeable} deleted "
            f"account(s) await their purge. Scheduling {', '.join(t.name for t in tasks)}..."
        )
        outbox_before = len(getattr(mail, "outbox", []))
        runner = Runner(tasks)
        started = time.monotonic()
        # Which threads the e-mails' receivers ran in: the executor's effect.
        threads: set[str] = set()

        def note_thread(sender: Any, **kwargs: Any) -> None:
            threads.add(threading.current_thread().name)

        task_dispatched.connect(note_thread, sender=send_user_email, weak=False)
        runner.start()
        try:
            after = self._watch(tasks, before, since, started, timeout)
        finally:
            runner.stop(timeout=30)
            task_dispatched.disconnect(note_thread, sender=send_user_email)
        self.receiver_threads = len(threads)
        elapsed = time.monotonic() - started
        self._summarise(before, after, elapsed, outbox_before)
        if not after.finished:
            paused = MaintenanceTask.objects.paused().filter(nid__in=[t.name for t in tasks])
            hint = "".join(f" Task {task.nid} is paused (see the admin)." for task in paused)
            raise CommandError(f"Work still left after {timeout:g} s; giving up.{hint}")

    def _watch(
        self, tasks: list[Any], before: Snapshot, since: datetime, started: float, timeout: float
    ) -> Snapshot:
        """Redraw the progress line until the work is done or ``timeout`` has passed."""
        redraw = self.stdout.isatty()
        last_printed = float("-inf")
        shown = 0
        while True:
            time.sleep(POLL_SECONDS)
            snapshot = take_snapshot(tasks, since=since)
            elapsed = time.monotonic() - started
            line = progress_line(snapshot, sent_before=before.sent, elapsed=elapsed)
            over = snapshot.finished or elapsed >= timeout
            if redraw:
                self.stdout.write("\r" + line.ljust(shown), ending="\n" if over else "")
                self.stdout.flush()
                shown = len(line)
            elif over or elapsed - last_printed >= PLAIN_PROGRESS_SECONDS:
                self.stdout.write(line)
                last_printed = elapsed
            if over:
                return snapshot

    def _summarise(self, before: Snapshot, after: Snapshot, elapsed: float, outbox: int) -> None:
        sent = after.sent - before.sent
        purged = before.purgeable - after.purgeable
        self.stdout.write(f"Summary ({elapsed:.1f} s):")
        for figures in after.tasks:
            self.stdout.write(f"  {figures.describe()}")
        self.stdout.write(
            f"  {sent} welcome e-mail(s) sent, {sent / elapsed:.1f} per second; "
            f"{purged} deleted account(s) purged."
        )
        self.stdout.write(
            f"  The e-mails' receivers ran in {self.receiver_threads} thread(s) of this "
            f"process ({executor_for(send_user_email)!r}): up to {send_user_email.concurrency} "
            "at once, send_user_email's concurrency."
        )
        if hasattr(mail, "outbox"):
            messages = mail.outbox[outbox:]
            recipients = {address for message in messages for address in message.to}
            self.stdout.write(
                f"  In-memory outbox: {len(messages)} message(s) to "
                f"{len(recipients)} different address(es)."
            )
