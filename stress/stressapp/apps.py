from django.apps import AppConfig


class StressAppConfig(AppConfig):
    name = "stress.stressapp"
    label = "stressapp"
    verbose_name = "Stress run"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Listed after the accounts app, so its receivers are connected by now
        # and the e-mail receiver can be replaced by its slowed-down wrapper.
        from . import receivers, tasks

        tasks.register_tasks()
        receivers.connect()
