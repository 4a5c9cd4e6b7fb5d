"""The Node row of the benchmarks' drain table: its target, its rows, when it is not run.

No node process and no database: ``node`` and ``npm`` are replaced where
the orchestrator looks them up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import nodejs, report
from benchmarks.checks import Target, node_target
from benchmarks.plan import DRAIN_VARIANTS, NODE, NODE_COMPARED, sqlite_variants


def test_the_node_target_wants_the_complete_only_drain_at_least_as_fast() -> None:
    assert node_target("complete-only receiver", (0.9, 1.0)) == Target(
        "drain, complete-only receiver: >= 1.0x planton on Node (1.00x)", True
    )
    assert node_target("complete-only receiver", (1.2, 0.99)).ok is False
    assert node_target("complete-only receiver", None).ok is None


def test_the_node_variant_is_compared_and_runs_on_postgresql_only() -> None:
    keys = {variant.key: variant for variant in DRAIN_VARIANTS}
    assert keys[NODE].baseline == "baseline"
    assert not keys[NODE].is_django_planton
    assert keys[NODE_COMPARED].is_django_planton
    assert NODE not in {variant.key for variant in sqlite_variants()}


def test_a_variant_not_run_says_why_and_its_ratio_is_empty() -> None:
    node = [variant for variant in DRAIN_VARIANTS if variant.key == NODE]
    rows = report.drain_rows("postgresql", node, {}, {NODE: "node not found"})
    assert rows[0][1] == "planton on Node (pg, pool of 10): not run (node not found)"
    assert rows[0][2] == 0
    versus = report.versus_row("postgresql", "complete-only receiver / Node", NODE, None)
    assert versus[5:7] == [NODE, "-"]
    assert len(versus) == len(report.DRAIN_HEADERS)


def test_without_node_the_drain_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodejs.shutil, "which", lambda name: None)
    assert nodejs.node_unavailable() == "node not found"
    assert nodejs.versions_line() == "Node not found"


def test_an_old_node_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodejs, "node_version", lambda: "v16.20.0")
    assert nodejs.node_unavailable() == "node v16.20.0, 18+ needed"


def test_without_packages_or_npm_the_drain_is_not_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "package.json").write_text('{"dependencies": {"planton": "3.2.4"}}')
    monkeypatch.setattr(nodejs, "NODE_DIR", tmp_path)
    monkeypatch.setattr(nodejs, "node_version", lambda: "v20.11.1")
    real_which = nodejs.shutil.which

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        return None if name == "npm" else real_which(name, *args, **kwargs)

    monkeypatch.setattr(nodejs.shutil, "which", which)
    assert nodejs.node_unavailable() == "benchmarks/node/node_modules absent and npm not found"
    (tmp_path / "node_modules" / "planton").mkdir(parents=True)
    assert nodejs.node_unavailable() is None
