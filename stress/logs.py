"""The runners' log files, read by byte offsets: what a runner wrote during a scenario.

A runner's log lines carry its own wall clock, ten minutes off for two of
them, so a stretch of time is taken as the bytes appended between two
sizes of the file, measured by the stress run when the stretch began and
ended. :func:`volume` sorts those lines by where they came from (logger and
thread; a traceback's lines belong to the record above them), and sets
apart the first traceback of each distinct error, which the library means to
log once; it does no I/O, so the checks' tests can feed it text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

from stress.config import KNOWN_NOISY_RECORDS
from stress.records import KNOWN_SOURCE, LogVolume

#: Per known issue, the records that are its: (logger, thread, start of the message).
Noisy = Mapping[str, tuple[tuple[str, str, str], ...]]

#: The start of a record (stress/settings.py's format): time, level, logger, [thread].
RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>\S+) "
    r"\[(?P<thread>[^\]]*)\] "
)
#: A pool's threads are one source: ``planton-worker_3`` counts as ``planton-worker``.
THREAD_NUMBER = re.compile(r"[_-]\d+$")
#: Numbers in a message (counts, ids, ports): two messages that differ only there are one error.
NUMBER = re.compile(r"\d+")
#: Where a record's traceback begins.
TRACEBACK = "Traceback (most recent call last):"
#: One record: the key of its error (its source and message, numbers aside; None for lines
#: before the first record), its source, its message's lines and its traceback's.
Record = tuple[str | None, str, list[str], list[str]]


def appended(path: Path, start: int, end: int | None = None) -> str:
    """The text written to ``path`` between byte offsets ``start`` and ``end`` (None: now)."""
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(start)
        data = log.read() if end is None else log.read(max(0, end - start))
    return data.decode(errors="replace")


def source(match: re.Match[str], message: str, noisy: Noisy) -> str:
    """``logger [thread]`` of a record, the thread's number dropped; or its known issue."""
    logger, thread = match["logger"], THREAD_NUMBER.sub("", match["thread"])
    for issue, patterns in noisy.items():
        for their_logger, their_thread, start in patterns:
            ours = logger == their_logger and thread == (their_thread or thread)
            if ours and message.startswith(start):
                return f"{KNOWN_SOURCE}{issue}"
    return f"{logger} [{thread}]"


def blocks(text: str) -> list[list[str]]:
    """The records of ``text``, each with the lines after it (its message's, its traceback)."""
    found: list[list[str]] = []
    for line in text.splitlines():
        if RECORD.match(line) or not found:
            found.append([line])
        else:
            found[-1].append(line)
    return found


def volume(
    runner: str,
    text: str,
    seconds: float,
    noisy: Noisy = KNOWN_NOISY_RECORDS,
    *,
    before: str = "",
) -> LogVolume:
    """How many lines ``text`` has, and from which sources, over ``seconds``.

    A record of a known issue (``noisy``), its traceback included, counts as
    that issue's. The first traceback of each distinct error (its message,
    numbers aside) counts apart, as ``first_tracebacks``: the library logs it
    once. A repeated traceback counts in full, and so do a message's own
    lines; ``before`` is what was logged earlier, whose tracebacks were the
    first. (Threads log concurrently: a repeat may be written before the
    first traceback of its error.)
    """
    by_source: Counter[str] = Counter()
    first_tracebacks = 0
    seen = {key for key, _, _, traceback in keyed(before, noisy) if key and traceback}
    records = 0
    for key, name, message, traceback in keyed(text, noisy):
        if key is None:
            by_source[name] += len(message)
            continue
        records += 1
        by_source[name] += len(message)
        if traceback and key not in seen:
            seen.add(key)
            first_tracebacks += len(traceback)
        else:
            by_source[name] += len(traceback)
    return LogVolume(
        runner=runner,
        seconds=seconds,
        records=records,
        by_source=tuple(by_source.most_common()),
        first_tracebacks=first_tracebacks,
    )


def keyed(text: str, noisy: Noisy) -> Iterator[Record]:
    """Each record of ``text`` (see :data:`Record`)."""
    for block in blocks(text):
        match = RECORD.match(block[0])
        if match is None:
            yield None, "(before the first record)", block, []
            continue
        message, traceback = split_traceback(block)
        name = source(match, block[0][match.end() :], noisy)
        key = f"{name} {NUMBER.sub('#', chr(10).join(message)[match.end() :])}"
        yield key, name, message, traceback


def split_traceback(block: list[str]) -> tuple[list[str], list[str]]:
    """A record's message lines, and its traceback's (from ``Traceback (most recent...`` on)."""
    for index, line in enumerate(block):
        if index and line.startswith(TRACEBACK):
            return block[:index], block[index:]
    return block, []


def matching(texts: Mapping[str, str], *needles: str) -> tuple[tuple[str, int], ...]:
    """Per runner, sorted, how many lines of its text contain every one of ``needles``."""
    return tuple(
        (label, sum(all(needle in line for needle in needles) for line in text.splitlines()))
        for label, text in sorted(texts.items())
    )
