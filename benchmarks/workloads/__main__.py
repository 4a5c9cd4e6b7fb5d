"""The child's entry point: set Django up, run one workload, print its result line."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.protocol import Result, emit

from . import NAMES


def setup_django() -> None:
    """Before any workload module is imported: they import models at their top."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the workload; an exception becomes a problem in the result, not a silent exit."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.workloads", description="Run one measured workload."
    )
    parser.add_argument("workload", choices=NAMES)
    parser.add_argument("params", type=json.loads, help="the workload's parameters, as JSON")
    args = parser.parse_args(argv)
    setup_django()
    from .tables import vendor

    try:
        run: Callable[[dict[str, Any]], Result] = importlib.import_module(
            f"{__package__}.{args.workload}"
        ).run
        result = run(args.params)
    except Exception as error:  # report, so the orchestrator can say what failed
        traceback.print_exc()
        result = {"problems": [f"{type(error).__name__}: {error}"]}
    result["vendor"] = vendor()
    result["pid"] = os.getpid()
    emit(result)


if __name__ == "__main__":
    main()
