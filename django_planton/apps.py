from django.apps import AppConfig


class PlantonConfig(AppConfig):
    name = "django_planton"
    verbose_name = "Planton scheduler"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
