from django.apps import AppConfig


class VisualSearchConfig(AppConfig):
    name = "visualsearch"
    verbose_name = "Visual search"

    def ready(self) -> None:
        from . import checks, signals  # noqa: F401  (checks register on import)

        signals.connect()
