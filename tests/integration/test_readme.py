"""The README cannot rot: every Python sample in it runs here.

Samples with ``>>>`` prompts run as doctests; the others are executed as
they stand, against a fresh task registry so that their registrations do not
leak into other tests. They import from the reader's app, ``myapp``: the
example site's accounts app stands in for it. The commands and options the README names are checked
against the Makefile and the ``run_planton`` parser.
"""

from __future__ import annotations

import doctest
import re
import sys
from pathlib import Path

import pytest

import django_planton
from django_planton import signals
from django_planton.management.commands.run_planton import Command
from django_planton.registry import TaskRegistry

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


PYTHON_SAMPLES = [body for body in blocks("python") if ">>>" not in body]
DOCTEST_SAMPLES = [body for body in blocks("python") if ">>>" in body]


def test_the_readme_has_samples_of_each_kind() -> None:
    assert len(PYTHON_SAMPLES) >= 6
    assert DOCTEST_SAMPLES


@pytest.fixture(autouse=True)
def myapp(monkeypatch: pytest.MonkeyPatch) -> None:
    """``myapp`` and the modules the samples import from it: the example site's."""
    from example_site import accounts
    from example_site.accounts import models, tasks

    for name, module in {"myapp": accounts, "myapp.models": models, "myapp.tasks": tasks}.items():
        monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> TaskRegistry:
    registry = TaskRegistry()
    monkeypatch.setattr(django_planton, "register", registry.register)
    monkeypatch.setattr(django_planton, "task", registry.task)
    return registry


@pytest.fixture
def restore_receivers():
    saved = {name: list(getattr(signals, name).receivers) for name in signals.__all__}
    yield
    for name, receivers in saved.items():
        signal = getattr(signals, name)
        with signal.lock:
            signal.receivers = receivers
            signal.sender_receivers_cache.clear()


@pytest.mark.django_db
@pytest.mark.usefixtures("restore_receivers")
@pytest.mark.parametrize(
    "sample", PYTHON_SAMPLES, ids=[f"sample{i}" for i in range(len(PYTHON_SAMPLES))]
)
def test_python_sample_runs(sample: str, fresh_registry: TaskRegistry) -> None:
    namespace: dict[str, object] = {"__name__": "readme_sample"}
    exec(compile(sample, "README.md", "exec"), namespace)


@pytest.mark.parametrize("sample", DOCTEST_SAMPLES)
def test_doctest_sample(sample: str) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(sample, {}, "README", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0
    assert runner.tries > 0


def test_registration_samples_register_their_tasks(fresh_registry: TaskRegistry) -> None:
    for sample in PYTHON_SAMPLES:
        if "django_planton.task(" in sample or "django_planton.register(" in sample:
            exec(compile(sample, "README.md", "exec"), {"__name__": "readme_sample"})
    assert fresh_registry.names() == [
        "enqueue_exports",
        "purge_accounts_nightly",
        "purge_deleted_accounts",
        "send_reminders",
        "send_user_email",
    ]
    assert type(fresh_registry.executor_of("enqueue_exports")).__name__ == "Inline"
    assert repr(fresh_registry.executor_of("send_reminders")) == "Threads(max_workers=20)"


def test_quickstart_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for command in re.findall(r"^make (\w+)", "\n".join(blocks("bash")), re.MULTILINE):
        assert re.search(rf"^{command}:", makefile, re.MULTILINE), command


def test_run_planton_options_in_the_readme_exist() -> None:
    parser = Command().create_parser("manage.py", "run_planton")
    known = {option for action in parser._actions for option in action.option_strings}
    table = README.split("### Running the scheduler", 1)[1].split("### The admin", 1)[0]
    documented = set(re.findall(r"^\| `(--?[\w-]+)", table, re.MULTILINE))
    assert documented
    assert documented <= known


def test_every_setting_is_documented() -> None:
    from django_planton.conf import DEFAULTS

    for name in DEFAULTS:
        assert f"`{name}`" in README, name


def test_every_signal_is_documented() -> None:
    for name in signals.__all__:
        assert f"`{name}`" in README, name
