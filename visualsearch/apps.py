from django.apps import AppConfig


class VisualSearchConfig(AppConfig):
    name = "visualsearch"
    verbose_name = "Visual search"

    def ready(self) -> None:
        from . import checks, registry, signals  # noqa: F401  (checks register on import)

        signals.connect()
        registry.size_tensorflow_threads()
