"""The clock-shift library (scripts/clockshift.c and .py): the wall clock moves, nothing else.

Each test runs a Python child under the library and compares what it reads
with this process's clocks. Skipped only when no C compiler is installed
(CI installs gcc).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scripts import clockshift

ROOT = Path(__file__).resolve().parents[2]

# Read in the child: its wall clock through Python and through libc's three
# entry points, and its monotonic clock around a sleep and a timed wait.
CHILD = r"""
import ctypes, datetime, json, threading, time

class Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]

libc = ctypes.CDLL(None)
libc.time.restype = ctypes.c_long
timeval = Timeval()
readings = {
    "time": time.time(),
    "now_utc": datetime.datetime.now(datetime.timezone.utc).timestamp(),
    "now_local": datetime.datetime.now().timestamp(),
    "coarse": time.clock_gettime(getattr(time, "CLOCK_REALTIME_COARSE", 5)),
    "gettimeofday_rc": libc.gettimeofday(ctypes.byref(timeval), None),
    "c_time": libc.time(None),
}
readings["gettimeofday"] = timeval.tv_sec + timeval.tv_usec / 1e6
readings["tv_usec"] = timeval.tv_usec
readings["monotonic_start"] = time.monotonic()
time.sleep(0.2)
readings["slept"] = time.monotonic() - readings["monotonic_start"]
before = time.monotonic()
time.sleep(0.1)
readings["short_sleep"] = time.monotonic() - before
before = time.monotonic()
threading.Event().wait(0.2)
readings["waited"] = time.monotonic() - before
print(json.dumps(readings))
"""


@pytest.fixture(scope="module")
def library() -> Path:
    if clockshift.find_compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang) to build scripts/clockshift.c")
    return clockshift.build()


def run_child(shift: float, library: Path) -> tuple[dict[str, Any], float, float, float, float]:
    """The child's readings, and this process's wall and monotonic clocks before and after."""
    wall_before, monotonic_before = time.time(), time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=clockshift.shifted_env(shift, library=library),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    wall_after, monotonic_after = time.time(), time.monotonic()
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), wall_before, wall_after, monotonic_before, monotonic_after


@pytest.mark.parametrize("shift", [600.0, -600.0], ids=["+600s", "-600s"])
def test_the_wall_clock_is_shifted_and_the_monotonic_clock_is_not(library, shift):
    readings, wall_before, wall_after, monotonic_before, monotonic_after = run_child(shift, library)

    for name in ("time", "now_utc", "now_local", "coarse", "gettimeofday", "c_time"):
        offset = readings[name] - shift
        # c_time is whole seconds, the coarse clock a few milliseconds behind.
        assert wall_before - 1.5 <= offset <= wall_after + 1.0, (
            f"{name}: read {readings[name]:.3f}, expected {shift:+g}s from this process's "
            f"[{wall_before:.3f}, {wall_after:.3f}]: off by {readings[name] - wall_before:+.3f}s"
        )
    assert readings["gettimeofday_rc"] == 0
    # CLOCK_MONOTONIC is one clock for every process of the host: the child's
    # reading lies between this process's before and after.
    assert monotonic_before <= readings["monotonic_start"] <= monotonic_after, readings
    # It also advances as usual across the child's sleep, and sleeps and
    # timed waits take the time asked for (neither fail nor wait the shift).
    assert 0.2 <= readings["slept"] < 1.0, readings
    assert 0.1 <= readings["short_sleep"] < 1.0, readings
    assert 0.19 <= readings["waited"] < 1.0, readings


def test_a_fractional_shift_keeps_microseconds_in_range(library):
    readings, wall_before, wall_after, *_ = run_child(-600.75, library)
    assert 0 <= readings["tv_usec"] < 1_000_000, readings
    assert wall_before - 600.75 - 0.1 <= readings["gettimeofday"] <= wall_after - 600.75 + 0.1
    assert abs(readings["time"] - readings["gettimeofday"]) < 0.5, readings


def test_no_shift_without_the_variable(library):
    env = clockshift.shifted_env(600, library=library)
    del env[clockshift.SHIFT_VARIABLE]
    before = time.time()
    result = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert before - 0.5 <= float(result.stdout) <= time.time() + 0.5


def test_the_command_line_runs_a_command_under_the_shift(library):
    before = time.time()
    result = subprocess.run(
        [sys.executable, "scripts/clockshift.py", "--shift", "600", "--", sys.executable, "-c",
         "import time; print(time.time())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert before + 599 <= float(result.stdout) <= time.time() + 601


def test_the_command_line_wants_a_command():
    result = subprocess.run(
        [sys.executable, "scripts/clockshift.py", "--shift", "600"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no command given" in result.stderr


# -- building and the environment ---------------------------------------------------------


def test_a_build_is_cached_and_a_changed_source_builds_anew(library, tmp_path, monkeypatch):
    first = clockshift.build(tmp_path)
    assert first.parent == tmp_path
    assert first.stat().st_size > 0
    built_at = first.stat().st_mtime_ns
    assert clockshift.build(tmp_path) == first
    assert first.stat().st_mtime_ns == built_at  # not compiled again

    changed = tmp_path / "clockshift.c"
    changed.write_text(clockshift.SOURCE.read_text() + "\n/* changed */\n")
    monkeypatch.setattr(clockshift, "SOURCE", changed)
    second = clockshift.build(tmp_path)
    assert second != first
    assert second.exists()
    assert sorted(path.name for path in tmp_path.glob("*.so")) == sorted([first.name, second.name])
    assert not list(tmp_path.glob("*.tmp"))


def test_no_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(clockshift, "find_compiler", lambda: None)
    with pytest.raises(RuntimeError, match=r"No C compiler found .*apt-get install gcc"):
        clockshift.build(tmp_path)


def test_a_failed_compilation_says_why(tmp_path, monkeypatch):
    broken = tmp_path / "clockshift.c"
    broken.write_text("this is not C\n")
    monkeypatch.setattr(clockshift, "SOURCE", broken)
    if clockshift.find_compiler() is None:
        pytest.skip("no C compiler to fail with")
    with pytest.raises(RuntimeError, match="Compiling the clock-shift library failed"):
        clockshift.build(tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written left


def test_shifted_env_prepends_the_library_and_sets_the_shift(tmp_path):
    library = tmp_path / "clockshift.so"
    original = {"LD_PRELOAD": "/opt/other.so", "KEEP": "1"}
    env = clockshift.shifted_env(-600, original, library=library)
    assert env["LD_PRELOAD"] == f"{library} /opt/other.so"
    assert env["PLANTON_CLOCK_SHIFT"] == "-600.0"
    assert env["KEEP"] == "1"
    assert original == {"LD_PRELOAD": "/opt/other.so", "KEEP": "1"}  # not changed
    # Shifting an environment again replaces the shift, and preloads once.
    again = clockshift.shifted_env(5.5, env, library=library)
    assert again["LD_PRELOAD"] == f"{library} /opt/other.so"
    assert again["PLANTON_CLOCK_SHIFT"] == "5.5"
    assert clockshift.shifted_env(1, {}, library=library)["LD_PRELOAD"] == str(library)
