"""The admin of failing instructions: states, filters, the release and give-up actions.

Also what the task and execution admins show of them: the failing instructions
inline and column of a task, the waiting-for-a-slot count, an execution's attempt.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import formats, timezone

from django_planton.admin import MaintenanceTaskAdmin
from django_planton.admin.common import INLINE_FAILING_LIMIT
from django_planton.models import FailingInstruction, MaintenanceTask

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory
from .test_admin import action_names, permission, post_action

pytestmark = pytest.mark.django_db

FAILING_URL = "admin:django_planton_failinginstruction_changelist"
TASKS_URL = "admin:django_planton_maintenancetask_changelist"
EXECUTIONS_URL = "admin:django_planton_maintenancetaskexecution_changelist"

ERROR = {"type": "ValueError", "message": "boom"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def failing(
    task: MaintenanceTask,
    instruction: str,
    state: str = "held_back",
    *,
    failures: int = 1,
    error: dict[str, str] | None = None,
    failed_ago: timedelta = timedelta(hours=3),
) -> FailingInstruction:
    """A failing instruction of ``task``: held back for an hour, given up, or due for retry."""
    now = timezone.now()
    times = {
        "held_back": {"retry_at": now + timedelta(hours=1)},
        "given_up": {"retry_at": None, "given_up_at": now - timedelta(hours=2)},
        "due": {"retry_at": now - timedelta(hours=1)},
    }[state]
    return FailingInstruction.objects.create(
        maintenance_task=task,
        instruction=instruction,
        failures=failures,
        last_failed_at=now - failed_ago,
        last_error=ERROR if error is None else error,
        **times,
    )


@pytest.fixture
def three_states():
    """One failing instruction in each state, of two tasks."""
    mailer = MaintenanceTaskFactory(nid="mailer")
    cleaner = MaintenanceTaskFactory(nid="cleaner")
    return {
        "held_back": failing(mailer, "send-1", "held_back"),
        "given_up": failing(mailer, "send-2", "given_up", failures=5),
        "due": failing(cleaner, "clean-1", "due", failures=2),
    }


def shown(response) -> set[int]:
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


@pytest.fixture
def viewing_client(client, django_user_model):
    """Staff that may view failing instructions, and no more."""
    user = django_user_model.objects.create_user(username="watcher", password="x", is_staff=True)
    user.user_permissions.add(permission("view_failinginstruction"))
    client.force_login(user)
    client.user = user
    return client


# -- the changelist ------------------------------------------------------------------------


def test_the_changelist_shows_each_state(admin_client, three_states):
    held_back = three_states["held_back"]

    response = admin_client.get(reverse(FAILING_URL))

    assert shown(response) == {row.pk for row in three_states.values()}
    content = response.content.decode()
    until = formats.localize(timezone.localtime(held_back.retry_at))
    assert f'<td class="field-state_display">held back until {until}</td>' in content
    assert '<td class="field-state_display">given up</td>' in content
    assert '<td class="field-state_display">due for retry</td>' in content
    assert content.count('<td class="field-last_error_summary">ValueError: boom</td>') == 3
    for name in ("mailer", "cleaner", "send-1", "send-2", "clean-1"):
        assert name in content


@pytest.mark.parametrize("state", ["held_back", "given_up", "due"])
def test_the_state_filter(admin_client, three_states, state):
    response = admin_client.get(reverse(FAILING_URL), {"state": state})
    assert shown(response) == {three_states[state].pk}


def test_a_row_past_its_retry_time_is_due_not_held_back(admin_client):
    row = failing(MaintenanceTaskFactory(), "late", "held_back")
    url = reverse(FAILING_URL)
    assert shown(admin_client.get(url, {"state": "held_back"})) == {row.pk}

    FailingInstruction.objects.filter(pk=row.pk).update(
        retry_at=timezone.now() - timedelta(seconds=5)
    )

    assert shown(admin_client.get(url, {"state": "held_back"})) == set()
    assert shown(admin_client.get(url, {"state": "due"})) == {row.pk}


def test_the_task_filter(admin_client, three_states):
    mailer = three_states["held_back"].maintenance_task
    response = admin_client.get(reverse(FAILING_URL), {"maintenance_task__id__exact": mailer.pk})
    assert shown(response) == {three_states["held_back"].pk, three_states["given_up"].pk}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("send-", {"held_back", "given_up"}),
        ("clean", {"due"}),
        ("mailer", {"held_back", "given_up"}),
    ],
)
def test_search_by_instruction_and_task_name(admin_client, three_states, query, expected):
    response = admin_client.get(reverse(FAILING_URL), {"q": query})
    assert shown(response) == {three_states[state].pk for state in expected}


def test_a_long_error_is_cut_short_in_the_list(admin_client):
    failing(MaintenanceTaskFactory(), "long", error={"type": "OSError", "message": "x" * 500})
    content = admin_client.get(reverse(FAILING_URL)).content.decode()
    assert "x" * 500 not in content
    assert "OSError: " + "x" * 60 in content


def test_the_changelist_has_no_n_plus_one(admin_client):
    from django.db import connection

    url = reverse(FAILING_URL)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    failing(MaintenanceTaskFactory(), "first")
    queries()  # warm up the session and content types
    few = queries()
    for n in range(10):
        failing(MaintenanceTaskFactory(), f"more-{n}", ["held_back", "given_up", "due"][n % 3])
    assert queries() == few


# -- read-only -----------------------------------------------------------------------------


def test_failing_instructions_cannot_be_added_changed_or_deleted(admin_client, three_states):
    row = three_states["held_back"]
    change_url = reverse("admin:django_planton_failinginstruction_change", args=[row.pk])
    delete_url = reverse("admin:django_planton_failinginstruction_delete", args=[row.pk])

    assert admin_client.get(reverse("admin:django_planton_failinginstruction_add")).status_code == (
        403
    )
    response = admin_client.get(change_url)
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False
    assert admin_client.post(change_url, {"instruction": "changed", "failures": 9}).status_code == (
        403
    )
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert "delete_selected" not in action_names(admin_client.get(reverse(FAILING_URL)))
    row.refresh_from_db()
    assert (row.instruction, row.failures) == ("send-1", 1)


def test_the_detail_page_shows_the_last_error_in_full(admin_client):
    execution = MaintenanceTaskExecutionFactory(instruction="parse")
    try:
        raise ValueError("<broken> input")
    except ValueError as error:
        execution.fail(error)  # the default retry policy holds the instruction back
    row = FailingInstruction.objects.get(instruction="parse")

    response = admin_client.get(
        reverse("admin:django_planton_failinginstruction_change", args=[row.pk])
    )

    content = response.content.decode()
    assert "<pre>Traceback (most recent call last)" in content
    assert "ValueError: &lt;broken&gt; input" in content
    assert "<broken>" not in content
    assert "held back until" in content


# -- the actions -------------------------------------------------------------------------


def test_retry_now_releases_the_selected_rows_only(admin_client, three_states):
    selected = [three_states["held_back"], three_states["given_up"]]

    response = post_action(admin_client, FAILING_URL, "retry_now", selected)

    assert response.status_code == 302
    assert list(FailingInstruction.objects.values_list("pk", flat=True)) == [three_states["due"].pk]
    assert messages_of(response) == [
        "2 instructions released: they may be dispatched at their tasks' next attempt."
    ]


@pytest.mark.parametrize(
    ("action", "left"),
    [("retry_now", {"due"}), ("give_up", {"held_back", "given_up", "due"})],
)
def test_the_actions_on_all_rows_of_a_search(admin_client, three_states, action, left):
    """Select all of a search that joins the task's table: only its rows are touched."""
    response = admin_client.post(
        f"{reverse(FAILING_URL)}?q=mailer",
        {
            "action": action,
            "_selected_action": [three_states["held_back"].pk],
            "index": "0",
            "select_across": "1",
        },
    )

    assert response.status_code == 302
    remaining = set(FailingInstruction.objects.values_list("pk", flat=True))
    assert remaining == {three_states[state].pk for state in left}
    assert FailingInstruction.objects.get(pk=three_states["due"].pk).given_up_at is None
    if action == "give_up":
        assert FailingInstruction.objects.given_up().count() == 2


def test_give_up_gives_up_the_selected_rows_only(admin_client, three_states):
    already = three_states["given_up"]
    before = timezone.now()
    untouched = failing(MaintenanceTaskFactory(), "not-selected", "held_back")

    response = post_action(
        admin_client,
        FAILING_URL,
        "give_up",
        [three_states["held_back"], three_states["due"], already],
    )

    assert response.status_code == 302
    for state in ("held_back", "due"):
        row = FailingInstruction.objects.get(pk=three_states[state].pk)
        assert row.given_up_at is not None
        assert before - timedelta(seconds=1) <= row.given_up_at <= timezone.now()
        assert row.retry_at is None
    assert FailingInstruction.objects.get(pk=already.pk).given_up_at == already.given_up_at
    untouched_now = FailingInstruction.objects.get(pk=untouched.pk)
    assert (untouched_now.given_up_at, untouched_now.retry_at) == (None, untouched.retry_at)
    assert messages_of(response) == [
        "2 instructions given up: they are not dispatched again until released.",
        "1 selected instruction was given up already and was left as it is.",
    ]
    given_up = shown(admin_client.get(reverse(FAILING_URL), {"state": "given_up"}))
    assert given_up == {three_states[state].pk for state in ("held_back", "due", "given_up")}


def test_staff_without_change_permission_sees_no_action(viewing_client, three_states):
    response = viewing_client.get(reverse(FAILING_URL))

    assert shown(response) == {row.pk for row in three_states.values()}
    assert action_names(response) == []
    post_action(viewing_client, FAILING_URL, "retry_now", three_states.values())
    post_action(viewing_client, FAILING_URL, "give_up", three_states.values())
    assert FailingInstruction.objects.count() == 3
    assert FailingInstruction.objects.given_up().count() == 1


def test_staff_with_change_permission_gets_both_actions(viewing_client, three_states):
    viewing_client.user.user_permissions.add(permission("change_failinginstruction"))
    response = viewing_client.get(reverse(FAILING_URL))
    assert sorted(action_names(response)) == ["give_up", "retry_now"]

    post_action(viewing_client, FAILING_URL, "retry_now", [three_states["due"]])
    assert not FailingInstruction.objects.filter(pk=three_states["due"].pk).exists()

    detail = viewing_client.get(
        reverse(
            "admin:django_planton_failinginstruction_change", args=[three_states["held_back"].pk]
        )
    )
    assert detail.status_code == 200
    assert detail.context["has_change_permission"] is False  # the rows themselves stay read-only


# -- on the task's page and in the tasks list --------------------------------------------


def task_page(client, task: MaintenanceTask):
    return client.get(reverse("admin:django_planton_maintenancetask_change", args=[task.pk]))


def test_the_task_page_lists_its_failing_instructions(admin_client):
    task = MaintenanceTaskFactory(nid="mailer")
    other = MaintenanceTaskFactory(nid="other")
    for n in range(INLINE_FAILING_LIMIT + 3):  # the latest failures first: send-0 to send-19
        state = "given_up" if n < 5 else "held_back"
        failing(task, f"send-{n}", state, failed_ago=timedelta(minutes=n + 1))
    failing(other, "not-mine")

    response = task_page(admin_client, task)

    assert response.status_code == 200
    [inline] = response.context["inline_admin_formsets"]
    rows = [form.original for form in inline]
    assert len(rows) == INLINE_FAILING_LIMIT
    assert [row.instruction for row in rows] == [f"send-{n}" for n in range(INLINE_FAILING_LIMIT)]
    assert not inline.has_add_permission
    assert not inline.has_change_permission
    assert not inline.has_delete_permission
    content = " ".join(response.content.decode().split())
    assert "not-mine" not in content
    assert "send-22" not in content
    assert content.count('<td class="field-state_display"> <p>given up</p> </td>') == 5
    assert content.count('<td class="field-state_display"> <p>held back until ') == 15
    link = f"{reverse(FAILING_URL)}?maintenance_task__id__exact={task.pk}"
    assert f'<a href="{link}">all 23 failing instructions</a> (18 held back, 5 given up)' in content


def test_the_task_page_of_a_task_without_failures(admin_client):
    task = MaintenanceTaskFactory(saturated_active_count=4)
    response = task_page(admin_client, task)
    assert response.status_code == 200
    [inline] = response.context["inline_admin_formsets"]
    assert list(inline) == []
    content = response.content.decode()
    assert "failinginstruction/?maintenance_task__id__exact" not in content
    assert "Waiting for a slot below" in content
    assert '<div class="readonly">4</div>' in content


def test_the_task_page_still_saves_with_failing_instructions(admin_client):
    task = MaintenanceTaskFactory(nid="saved", is_paused=False)
    rows = [failing(task, f"send-{n}") for n in range(INLINE_FAILING_LIMIT + 2)]
    shown_rows = [
        form.original for form in task_page(admin_client, task).context["inline_admin_formsets"][0]
    ]
    prefix = "failing_instructions"
    data = {
        "maximum_concurrent_execution_count": "3",
        "maximum_execution_duration": "00:05:00",
        "next_attempt_at_0": "",
        "next_attempt_at_1": "",
        f"{prefix}-TOTAL_FORMS": str(len(shown_rows)),
        f"{prefix}-INITIAL_FORMS": str(len(shown_rows)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "0",
        "is_paused": "on",
        "_save": "Save",
    }
    for n, row in enumerate(shown_rows):
        data[f"{prefix}-{n}-id"] = str(row.pk)
        data[f"{prefix}-{n}-maintenance_task"] = str(task.pk)

    response = admin_client.post(
        reverse("admin:django_planton_maintenancetask_change", args=[task.pk]), data
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    task.refresh_from_db()
    assert task.is_paused
    assert task.maximum_concurrent_execution_count == 3
    assert FailingInstruction.objects.filter(maintenance_task=task).count() == len(rows)


def test_the_tasks_changelist_counts_failing_instructions(admin_client):
    busy = MaintenanceTaskFactory(nid="busy")
    quiet = MaintenanceTaskFactory(nid="quiet")
    MaintenanceTaskExecutionFactory.create_batch(2, maintenance_task=busy)
    for n, state in enumerate(["held_back", "held_back", "given_up", "due"]):
        failing(busy, f"busy-{n}", state)
    failing(quiet, "quiet-0", "given_up")
    idle = MaintenanceTaskFactory(nid="idle")

    response = admin_client.get(reverse(TASKS_URL))

    rows = {task.nid: task for task in response.context["cl"].result_list}
    assert rows["busy"].running_count == 2  # not multiplied by the failing rows
    counts = {
        nid: (task.failing_count, task.held_back_count, task.given_up_count)
        for nid, task in rows.items()
    }
    assert counts == {"busy": (4, 2, 1), "quiet": (1, 0, 1), "idle": (0, 0, 0)}
    content = response.content.decode()
    for task, text in (
        (busy, "2 held back, 1 given up, 1 due for retry"),
        (quiet, "0 held back, 1 given up"),
    ):
        link = f"{reverse(FAILING_URL)}?maintenance_task__id__exact={task.pk}"
        assert f'<td class="field-failing_display"><a href="{link}">{text}</a></td>' in content
    assert f"{reverse(FAILING_URL)}?maintenance_task__id__exact={idle.pk}" not in content
    assert '<td class="field-failing_display">\u2014</td>' in content


def test_tasks_can_be_sorted_by_their_failing_instructions(admin_client):
    for name, count in (("b-one", 1), ("c-none", 0), ("a-three", 3)):
        task = MaintenanceTaskFactory(nid=name)
        for n in range(count):
            failing(task, f"{name}-{n}")
    column = 1 + MaintenanceTaskAdmin.list_display.index("failing_display")

    descending = admin_client.get(reverse(TASKS_URL), {"o": f"-{column}"}).context["cl"]

    assert [task.nid for task in descending.result_list] == ["a-three", "b-one", "c-none"]


def test_the_failing_column_has_no_n_plus_one(admin_client):
    from django.db import connection

    url = reverse(TASKS_URL)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    failing(MaintenanceTaskFactory(), "first")
    queries()
    few = queries()
    for n in range(10):
        task = MaintenanceTaskFactory()
        failing(task, f"held-{n}")
        failing(task, f"given-{n}", "given_up")
    assert queries() == few


# -- an execution's attempt ----------------------------------------------------------------


def test_executions_show_their_attempt(admin_client):
    execution = MaintenanceTaskExecutionFactory(attempt=3)

    listed = admin_client.get(reverse(EXECUTIONS_URL)).content.decode()
    detail = admin_client.get(
        reverse("admin:django_planton_maintenancetaskexecution_change", args=[execution.pk])
    ).content.decode()

    assert (
        f'<td class="field-instruction_display">{execution.instruction} '
        '<span class="planton-tag">attempt 3</span></td>'
    ) in listed
    assert '<div class="readonly">3</div>' in detail
    assert "Attempt" in detail
