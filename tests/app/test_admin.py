"""The admin: read-only executions, the terminate action and its permission, steering tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_planton import signals
from django_planton.admin import MaintenanceTaskAdmin
from django_planton.executors import Inline, Threads
from django_planton.models import ExecutionState, MaintenanceTask, MaintenanceTaskExecution

from ..factories import MaintenanceTaskExecutionFactory, MaintenanceTaskFactory

pytestmark = pytest.mark.django_db

TASKS_URL = "admin:django_planton_maintenancetask_changelist"
EXECUTIONS_URL = "admin:django_planton_maintenancetaskexecution_changelist"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def permission(codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label="django_planton", codename=codename)


@pytest.fixture
def staff_client(client, django_user_model):
    """A client logged in as staff that may view executions, and no more."""
    user = django_user_model.objects.create_user(username="operator", password="x", is_staff=True)
    user.user_permissions.add(permission("view_maintenancetaskexecution"))
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def terminating_client(staff_client):
    """Staff that may view executions and terminate them."""
    staff_client.user.user_permissions.add(permission("terminate_maintenancetaskexecution"))
    return staff_client


def action_names(response) -> list[str]:
    action_form = response.context["action_form"]
    if action_form is None:  # no action at all is available
        return []
    return [name for name, _label in action_form.fields["action"].choices if name]


def post_action(client, url_name: str, action: str, objects) -> object:
    return client.post(
        reverse(url_name),
        {
            "action": action,
            "_selected_action": [obj.pk for obj in objects],
            "index": "0",
            "select_across": "0",
        },
    )


# -- access -------------------------------------------------------------------------------


@pytest.mark.parametrize("url_name", [TASKS_URL, EXECUTIONS_URL])
def test_changelists_render_for_a_superuser(admin_client, url_name):
    execution = MaintenanceTaskExecutionFactory(maintenance_task__nid="listed-task")
    response = admin_client.get(reverse(url_name))
    assert response.status_code == 200
    assert "listed-task" in response.content.decode()
    [shown] = response.context["cl"].result_list
    assert shown.pk in {execution.pk, execution.maintenance_task_id}


@pytest.mark.parametrize("url_name", [TASKS_URL, EXECUTIONS_URL])
def test_anonymous_users_are_sent_to_the_login_page(client, url_name):
    url = reverse(url_name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("url_name", [TASKS_URL, EXECUTIONS_URL])
def test_non_staff_users_are_sent_to_the_login_page(client, django_user_model, url_name):
    user = django_user_model.objects.create_user(username="visitor", password="x")
    user.user_permissions.add(permission("view_maintenancetaskexecution"))
    client.force_login(user)
    response = client.get(reverse(url_name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_view_permission_is_forbidden(client, django_user_model):
    user = django_user_model.objects.create_user(username="nobody", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(reverse(EXECUTIONS_URL)).status_code == 403


# -- executions are history -------------------------------------------------------------


def test_executions_cannot_be_added_changed_or_deleted(admin_client):
    execution = MaintenanceTaskExecutionFactory(instruction="original")
    change_url = reverse(
        "admin:django_planton_maintenancetaskexecution_change", args=[execution.pk]
    )
    delete_url = reverse(
        "admin:django_planton_maintenancetaskexecution_delete", args=[execution.pk]
    )

    assert (
        admin_client.get(reverse("admin:django_planton_maintenancetaskexecution_add")).status_code
        == 403
    )
    response = admin_client.get(change_url)
    assert response.status_code == 200  # viewing is allowed
    assert response.context["has_change_permission"] is False
    assert admin_client.post(change_url, {"instruction": "changed"}).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403

    response = admin_client.get(reverse(EXECUTIONS_URL))
    assert "delete_selected" not in action_names(response)
    assert MaintenanceTaskExecution.objects.get(pk=execution.pk).instruction == "original"


def test_tasks_cannot_be_added(admin_client):
    assert admin_client.get(reverse("admin:django_planton_maintenancetask_add")).status_code == 403


def test_the_execution_page_shows_the_error_traceback(admin_client):
    execution = MaintenanceTaskExecutionFactory()
    try:
        raise ValueError("<broken> input")
    except ValueError as error:
        execution.fail(error)
    response = admin_client.get(
        reverse("admin:django_planton_maintenancetaskexecution_change", args=[execution.pk])
    )
    content = response.content.decode()
    assert "<pre>Traceback (most recent call last)" in content
    assert "ValueError: &lt;broken&gt; input" in content


# -- the terminate action -------------------------------------------------------------------


def test_staff_without_the_permission_gets_no_terminate_action(staff_client):
    execution = MaintenanceTaskExecutionFactory()
    response = staff_client.get(reverse(EXECUTIONS_URL))
    assert response.status_code == 200
    assert "terminate" not in action_names(response)

    post_action(staff_client, EXECUTIONS_URL, "terminate", [execution])

    execution.refresh_from_db()
    assert execution.is_running
    assert execution.terminated_at is None


def test_staff_with_the_permission_terminates_running_executions(
    terminating_client, record_signal, django_capture_on_commit_callbacks
):
    running = MaintenanceTaskExecutionFactory.create_batch(2)
    done = MaintenanceTaskExecutionFactory(completed=True)
    terminated = record_signal(signals.execution_terminated)

    response = terminating_client.get(reverse(EXECUTIONS_URL))
    assert "terminate" in action_names(response)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_action(terminating_client, EXECUTIONS_URL, "terminate", [*running, done])

    assert response.status_code == 302
    for execution in running:
        execution.refresh_from_db()
        assert execution.state == ExecutionState.COMPLETED
        assert execution.terminated_at is not None
        assert execution.terminated_reason == "terminated by operator in the admin"
    done.refresh_from_db()
    assert done.terminated_at is None
    assert sorted(call["execution"].pk for call in terminated.items) == sorted(
        execution.pk for execution in running
    )
    messages = [str(m) for m in response.wsgi_request._messages]
    assert "2 executions terminated." in messages
    assert "1 selected execution was not running and was left as it is." in messages


# -- the tasks changelist ------------------------------------------------------------------


def test_tasks_changelist_shows_running_count_and_effective_concurrency(admin_client):
    busy = MaintenanceTaskFactory(nid="busy", concurrency=3)
    steered = MaintenanceTaskFactory(
        nid="steered", concurrency=1, maximum_concurrent_execution_count=7
    )
    MaintenanceTaskExecutionFactory.create_batch(2, maintenance_task=busy)
    MaintenanceTaskExecutionFactory(maintenance_task=busy, completed=True)
    MaintenanceTaskExecutionFactory(maintenance_task=steered, completed=True)

    response = admin_client.get(reverse(TASKS_URL))

    rows = {task.nid: task for task in response.context["cl"].result_list}
    assert (rows["busy"].running_count, rows["busy"].effective_concurrency) == (2, 3)
    assert (rows["steered"].running_count, rows["steered"].effective_concurrency) == (0, 7)
    content = response.content.decode()
    assert '<td class="field-running_count">2 / 3</td>' in content
    assert '<td class="field-running_count">0 / 7</td>' in content


def test_tasks_can_be_sorted_by_running_count(admin_client):
    for name, running in (("b-one", 1), ("c-none", 0), ("a-three", 3)):
        task = MaintenanceTaskFactory(nid=name)
        MaintenanceTaskExecutionFactory.create_batch(running, maintenance_task=task)
    # The changelist's columns are the action checkbox, then list_display.
    column = 1 + MaintenanceTaskAdmin.list_display.index("running_count")
    url = reverse(TASKS_URL)

    descending = admin_client.get(url, {"o": f"-{column}"}).context["cl"].result_list
    ascending = admin_client.get(url, {"o": f"{column}"}).context["cl"].result_list

    assert [task.nid for task in descending] == ["a-three", "b-one", "c-none"]
    assert [task.nid for task in ascending] == ["c-none", "b-one", "a-three"]


@pytest.mark.parametrize(
    ("action", "initial", "expected"),
    [
        ("pause", {"is_paused": False}, {"is_paused": True}),
        ("resume", {"is_paused": True}, {"is_paused": False}),
    ],
)
def test_pause_and_resume_actions(admin_client, action, initial, expected):
    tasks = MaintenanceTaskFactory.create_batch(2, **initial)
    untouched = MaintenanceTaskFactory(**initial)
    response = post_action(admin_client, TASKS_URL, action, tasks)
    assert response.status_code == 302
    for task in tasks:
        task.refresh_from_db()
        assert task.is_paused is expected["is_paused"]
    untouched.refresh_from_db()
    assert untouched.is_paused is initial["is_paused"]


def test_attempt_now_action(admin_client):
    later = timezone.now() + timedelta(hours=1)
    task = MaintenanceTaskFactory(next_attempt_at=later)
    before = timezone.now()
    post_action(admin_client, TASKS_URL, "attempt_now", [task])
    task.refresh_from_db()
    assert before <= task.next_attempt_at <= timezone.now()


def test_the_override_is_editable_in_the_changelist(admin_client):
    task = MaintenanceTaskFactory(nid="editable")
    response = admin_client.post(
        reverse(TASKS_URL),
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(task.pk),
            "form-0-maximum_concurrent_execution_count": "5",
            "form-0-is_paused": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    task.refresh_from_db()
    assert task.maximum_concurrent_execution_count == 5
    assert task.is_paused
    assert task.effective_concurrency == 5


# -- no N+1 queries ------------------------------------------------------------------------


def count_queries(client, url: str) -> int:
    from django.db import connection

    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def make_executions(tasks: int, per_task: int) -> None:
    for n in range(tasks):
        task = MaintenanceTaskFactory(nid=f"load-{n}", maximum_concurrent_execution_count=n)
        MaintenanceTaskExecutionFactory.create_batch(per_task - 1, maintenance_task=task)
        MaintenanceTaskExecutionFactory(
            maintenance_task=task, failed=True, hostname=f"host-{n % 2}"
        )


def test_the_executions_changelist_has_no_n_plus_one(admin_client, django_assert_max_num_queries):
    url = reverse(EXECUTIONS_URL)
    make_executions(tasks=1, per_task=2)
    admin_client.get(url)  # warm up the session and content types
    few = count_queries(admin_client, url)

    make_executions(tasks=5, per_task=6)  # 30 more, across 5 more tasks
    assert MaintenanceTaskExecution.objects.count() == 32
    many = count_queries(admin_client, url)

    assert many == few
    with django_assert_max_num_queries(15):
        response = admin_client.get(url)
    assert len(response.context["cl"].result_list) == 32


def test_the_tasks_changelist_has_no_n_plus_one(admin_client, django_assert_max_num_queries):
    url = reverse(TASKS_URL)
    make_executions(tasks=2, per_task=2)
    admin_client.get(url)
    few = count_queries(admin_client, url)

    make_executions(tasks=0, per_task=0)
    for n in range(2, 12):
        task = MaintenanceTaskFactory(nid=f"load-{n}")
        MaintenanceTaskExecutionFactory.create_batch(3, maintenance_task=task)
    assert MaintenanceTask.objects.count() == 12
    many = count_queries(admin_client, url)

    assert many == few
    with django_assert_max_num_queries(12):
        response = admin_client.get(url)
    assert len(response.context["cl"].result_list) == 12


def test_the_task_pages_show_each_tasks_executor(admin_client, make_task):
    make_task("inline_task", executor=Inline())
    make_task("threaded_task", executor=Threads(max_workers=3))
    make_task("default_task")
    expected = {
        "inline_task": "Inline()",
        "threaded_task": "Threads(max_workers=3)",
        "default_task": "Threads(max_workers=None) (PLANTON_EXECUTOR)",
        "gone_task": "not registered in this process",
    }
    for nid, executor in expected.items():
        task = MaintenanceTaskFactory(nid=nid)
        page = admin_client.get(
            reverse("admin:django_planton_maintenancetask_change", args=[task.pk])
        )
        assert f'<div class="readonly">{executor}</div>' in page.content.decode()
