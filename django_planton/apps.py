from django.apps import AppConfig


class PlantonConfig(AppConfig):
    name = "django_planton"
    verbose_name = "Planton scheduler"
    default_auto_field = "django.db.models.BigAutoField"
