"""Run a process under a shifted wall clock: the ``clockshift.c`` LD_PRELOAD library.

Only ``CLOCK_REALTIME`` (what ``time.time()`` and ``datetime.now()`` read)
moves; the monotonic clock, and with it every sleep and timeout, does not.
That is a host whose clock is off, which is what the tests of a runner
under clock skew need (libfaketime cannot do it for Python 3.11: its
``time.sleep`` fails with EINVAL)::

    python scripts/clockshift.py --shift 600 -- date
    python scripts/clockshift.py --shift -600 -- python manage.py run_planton

or from Python: ``subprocess.run(cmd, env=shifted_env(600))``. :func:`build`
compiles the library once into a cache folder, keyed by a hash of its source
and flags, so that a change of either rebuilds it; it needs a C compiler
(``$CC``, ``cc``, ``gcc`` or ``clang``) and the C library's headers.

Standard library only, so that it also runs as a plain script.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["SHIFT_VARIABLE", "SOURCE", "build", "find_compiler", "shifted_env"]

SOURCE = Path(__file__).resolve().with_name("clockshift.c")
#: The environment variable the library reads its shift from, in seconds.
SHIFT_VARIABLE = "PLANTON_CLOCK_SHIFT"
FLAGS = ("-shared", "-fPIC", "-O2")
LIBRARIES = ("-ldl",)


def find_compiler() -> list[str] | None:
    """The C compiler's command: ``$CC`` when set, else ``cc``, ``gcc`` or ``clang``; or None."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for candidate in candidates:
        command = shlex.split(candidate)
        if command and shutil.which(command[0]):
            return command
    return None


def default_cache_dir() -> Path:
    """Under the system's temporary folder, one per user (a folder root made stays root's)."""
    return Path(tempfile.gettempdir()) / f"planton-clockshift-{os.getuid()}"


def build(cache_dir: Path | None = None) -> Path:
    """The compiled library, built now unless the cache holds one from the same source.

    Raises RuntimeError when no C compiler is found or the compilation fails.
    """
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(FLAGS + LIBRARIES).encode()).hexdigest()[:16]
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    library = folder / f"clockshift-{key}.so"
    if library.exists():
        return library
    compiler = find_compiler()
    if compiler is None:
        raise RuntimeError(
            "No C compiler found (looked for $CC, cc, gcc and clang); the clock-shift library "
            f"{SOURCE.name} must be compiled. On Debian: apt-get install gcc libc6-dev"
        )
    folder.mkdir(parents=True, exist_ok=True)
    # Compile next to the target and rename: a process building at the same
    # time never loads a half-written file.
    descriptor, partial = tempfile.mkstemp(dir=folder, prefix=library.stem, suffix=".tmp")
    os.close(descriptor)
    command = [*compiler, *FLAGS, "-o", partial, str(SOURCE), *LIBRARIES]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(
                f"Compiling the clock-shift library failed ({shlex.join(command)}):\n"
                f"{result.stderr.strip()}"
            )
        os.replace(partial, library)
    finally:
        Path(partial).unlink(missing_ok=True)
    return library


def shifted_env(
    seconds: float, env: Mapping[str, str] | None = None, *, library: Path | None = None
) -> dict[str, str]:
    """``env`` (default: this process's) with the library preloaded and the shift set.

    The library goes first in ``LD_PRELOAD``, before any already listed.
    ``library`` defaults to :func:`build`'s.
    """
    shifted = dict(os.environ if env is None else env)
    path = str(library if library is not None else build())
    preloaded = [item for item in shifted.get("LD_PRELOAD", "").replace(":", " ").split() if item]
    shifted["LD_PRELOAD"] = " ".join([path, *(item for item in preloaded if item != path)])
    shifted[SHIFT_VARIABLE] = repr(float(seconds))
    return shifted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run a command with its wall clock (CLOCK_REALTIME) shifted.",
        usage="%(prog)s --shift SECONDS -- COMMAND [ARG ...]",
    )
    parser.add_argument(
        "--shift", type=float, required=True, help="seconds to add (negative: go back)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    try:
        env = shifted_env(args.shift)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    try:
        os.execvpe(command[0], command, env)
    except OSError as error:
        print(f"{command[0]}: {error.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
