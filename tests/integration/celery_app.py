"""The test app's Celery app: the broker is ``PLANTON_TEST_BROKER_URL`` (a Redis the test starts).

A worker runs it with ``celery -A tests.integration.celery_app worker``; with
``DJANGO_SETTINGS_MODULE`` set, Celery's Django integration sets Django up in
the worker, and the test app's ``ready()`` registers the tasks there.
"""

import os

from celery import Celery

app = Celery("planton_test")
app.conf.update(
    broker_url=os.environ.get("PLANTON_TEST_BROKER_URL", "redis://127.0.0.1:1/0"),
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    # A broker that is down fails the send within a second, not after minutes.
    broker_transport_options={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
    task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
)
