"""An in-memory (locmem) e-mail backend that also appends every recipient to a file.

Each runner process has its own outbox; the file, one per runner, lets the
stress run count the e-mails each account got across processes, kills
included (one ``write`` per batch on an ``O_APPEND`` descriptor, no buffer to
lose).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.locmem import EmailBackend


def sent_log_path(runner: str | None = None) -> Path:
    return Path(settings.STRESS_DIR) / "mail" / f"{runner or settings.STRESS_RUNNER}.sent"


class RecordingEmailBackend(EmailBackend):
    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        count = super().send_messages(messages)
        lines = "".join(f"{address}\n" for message in messages for address in message.to)
        if lines:
            path = sent_log_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, lines.encode())
            finally:
                os.close(descriptor)
        return count
