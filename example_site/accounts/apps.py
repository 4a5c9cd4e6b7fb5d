from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "example_site.accounts"
    label = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing the tasks module registers its tasks; receivers are
        # connected here rather than at import of a models module, so that
        # they are connected exactly when the registry is filled.
        from . import receivers, tasks  # noqa: F401

        receivers.connect()
