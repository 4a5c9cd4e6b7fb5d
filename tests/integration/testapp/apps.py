from django.apps import AppConfig


class PlantonTestAppConfig(AppConfig):
    name = "tests.integration.testapp"
    label = "planton_testapp"
    verbose_name = "django-planton test app"

    def ready(self) -> None:
        from . import tasks

        tasks.register_tasks()
