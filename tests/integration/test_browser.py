"""The admin in a real browser: headless Chromium, through selenium, against a live server.

It logs in as a superuser, loads the dashboard, a task's page and both lists
at 1,400 px, and checks that the charts are drawn (SVG elements of a
non-zero size), that the lists need no horizontal scrollbar, that the dark
theme recolours the charts, and that the browser's console shows no error.

With ``PLANTON_SCREENSHOTS=1`` it saves ``docs/screenshots/dashboard.png``
and ``docs/screenshots/task.png`` (the README shows them), from the
realistic data it builds with the factories.

Needs Debian's ``chromium`` and ``chromium-driver`` (CI installs them).
Without them the test is skipped with a reason, except on CI (``CI`` set),
where it fails.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from django_planton.models import MaintenanceTask
from django_planton.states import ExecutionState

from ..factories import (
    MaintenanceTaskExecutionFactory,
    MaintenanceTaskFactory,
    RunnerProcessFactory,
)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
WIDTH = 1400
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium at 1,400 px wide, its console log kept."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium and chromium-driver (see .ci/run).")
        pytest.skip("chromium and chromedriver are not installed (Debian: chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WIDTH},1000",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def seed_activity(make_task: Any) -> MaintenanceTask:
    """Three tasks with a day of executions of every outcome, two runners; returns the busiest."""
    make_task("send_user_email", concurrency=10)
    make_task("purge_deleted_accounts", concurrency=2)
    chooser = random.Random(14)
    now = timezone.now()
    busy = MaintenanceTaskFactory(
        nid="send_user_email",
        concurrency=10,
        attempt_number=0,
        next_attempt_at=now + timedelta(seconds=12),
        last_attempted_at=now - timedelta(seconds=3),
        last_dispatched_at=now - timedelta(seconds=3),
    )
    purge = MaintenanceTaskFactory(
        nid="purge_deleted_accounts",
        concurrency=2,
        attempt_number=7,
        next_attempt_at=now + timedelta(minutes=8),
        last_attempted_at=now - timedelta(minutes=2),
        last_error="OperationalError: canceling statement due to statement timeout",
    )
    MaintenanceTaskFactory(nid="export_invoices", next_attempt_at=now - timedelta(days=3))
    executions = []
    for minute in range(0, 24 * 60, 3):
        for _ in range(chooser.randint(0, 6) if minute > 60 else chooser.randint(2, 9)):
            started = now - timedelta(minutes=minute, seconds=chooser.randint(0, 179))
            roll = chooser.random()
            error = {"type": "SMTPRecipientsRefused", "message": "550 no such user"}
            executions.append(
                MaintenanceTaskExecutionFactory.build(
                    maintenance_task=busy,
                    started_at=started,
                    ended_at=started + timedelta(milliseconds=chooser.randint(40, 2500)),
                    state=ExecutionState.COMPLETED,
                    error=error if roll < 0.06 else None,
                    terminated_at=started + timedelta(minutes=5) if 0.06 <= roll < 0.08 else None,
                    terminated_reason="maximum execution duration exceeded"
                    if 0.06 <= roll < 0.08
                    else None,
                )
            )
    for seconds in (4, 9, 40, 75, 130, 200):
        executions.append(
            MaintenanceTaskExecutionFactory.build(
                maintenance_task=busy, started_at=now - timedelta(seconds=seconds)
            )
        )
    executions.append(
        MaintenanceTaskExecutionFactory.build(
            maintenance_task=purge, started_at=now - timedelta(minutes=1)
        )
    )
    for execution in executions:
        if execution.terminated_at is not None:
            execution.ended_at = execution.terminated_at
    type(executions[0]).objects.bulk_create(executions)
    RunnerProcessFactory(hostname="worker-1", tasks=[{"name": "send_user_email"}])
    RunnerProcessFactory(hostname="worker-2", dead=True)
    return busy


def log_in(browser: Any, live_server: Any, django_user_model: Any) -> None:
    """A superuser's session, handed to the browser as its cookie.

    Not through the login form: whether the click's navigation has ended
    when the test looks is the browser's race, not the admin's behaviour.
    """
    from django.conf import settings
    from django.test import Client
    from selenium.webdriver.support.ui import WebDriverWait

    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "admin")
    client = Client()
    client.force_login(user)
    browser.get(f"{live_server.url}/admin/login/")  # the cookie's domain
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    browser.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": cookie, "path": "/"})
    browser.get(f"{live_server.url}/admin/")
    WebDriverWait(browser, 15).until(lambda driver: "/admin/login/" not in driver.current_url)


def console_errors(browser: Any) -> list[dict[str, Any]]:
    """The console's errors since the last call.

    Chromium asks every site for ``/favicon.ico`` on its own, and the example
    site serves none: that 404 is the browser's, not the pages'.
    """
    return [
        entry
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "/favicon.ico " not in entry["message"]
    ]


def fits_the_window(browser: Any) -> bool:
    """Whether the page needs no horizontal scrollbar, nor any of its tables."""
    return bool(
        browser.execute_script(
            "const tables = document.querySelectorAll('#result_list, .planton-table table');"
            "const wide = [...tables].some("
            "  (table) => table.scrollWidth > table.parentElement.clientWidth);"
            "return document.documentElement.scrollWidth <= window.innerWidth && !wide;"
        )
    )


def screenshot(browser: Any, name: str) -> None:
    """Save the whole page at 1,400 px wide, when PLANTON_SCREENSHOTS=1."""
    if os.environ.get("PLANTON_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(WIDTH, min(int(height) + 140, 4000))
    browser.save_screenshot(str(SCREENSHOTS / name))
    browser.set_window_size(WIDTH, 1000)


def test_the_dashboard_and_a_tasks_charts_render_in_chromium(
    browser, live_server, django_user_model, make_task
):
    from selenium.webdriver.common.by import By

    busy = seed_activity(make_task)
    log_in(browser, live_server, django_user_model)

    browser.get(f"{live_server.url}/admin/django_planton/maintenancetask/dashboard/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#planton-tasks tbody tr")
    assert len(rows) == 3
    assert "not registered" in rows[0].text  # export_invoices
    meters = browser.find_elements(By.CSS_SELECTOR, "#planton-tasks meter")
    assert all(meter.size["width"] > 0 for meter in meters)
    screenshot(browser, "dashboard.png")
    assert fits_the_window(browser)

    browser.get(f"{live_server.url}/admin/django_planton/maintenancetask/{busy.pk}/change/")
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.planton-chart")
    assert len(charts) == 3
    for chart in charts:
        assert chart.size["width"] > 300
        assert chart.size["height"] > 50
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.planton-chart rect.planton-succeeded")
    assert any(bar.size["height"] > 0 for bar in bars)
    light = bars[0].value_of_css_property("fill")
    screenshot(browser, "task.png")

    browser.execute_script("document.documentElement.dataset.theme = 'dark'")
    assert bars[0].value_of_css_property("fill") != light

    for path in ("maintenancetask/", "maintenancetaskexecution/"):
        browser.get(f"{live_server.url}/admin/django_planton/{path}")
        assert browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        assert fits_the_window(browser), f"{path} needs a horizontal scrollbar at {WIDTH} px"

    assert console_errors(browser) == []
