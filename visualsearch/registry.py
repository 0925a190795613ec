"""Build extractors and indexes from settings dicts, once per alias, like Django's CACHES.

Instances are cached because they are expensive (a loaded CNN, an in-memory matrix, a connection pool) and
dropped when tests override the settings.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Generic, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

T = TypeVar("T")


class AliasRegistry(Generic[T]):
    def __init__(self, setting_name: str, build: Callable[[type, dict[str, Any]], T]) -> None:
        self.setting_name = setting_name
        self._build = build
        self._instances: dict[str, T] = {}
        self._lock = threading.Lock()

    def __getitem__(self, alias: str) -> T:
        instance = self._instances.get(alias)
        if instance is None:
            with self._lock:  # two first requests must not load the model twice
                instance = self._instances.get(alias)
                if instance is None:
                    instance = self._instances[alias] = self._create(alias)
        return instance

    def _create(self, alias: str) -> T:
        configs = getattr(settings, self.setting_name)
        if alias not in configs:
            raise ImproperlyConfigured(f"{self.setting_name} has no alias {alias!r}")
        config = configs[alias]
        try:
            cls = import_string(config["BACKEND"])
        except (ImportError, KeyError) as exc:
            raise ImproperlyConfigured(f"{self.setting_name}[{alias!r}]: bad BACKEND: {exc}") from exc
        return self._build(cls, dict(config.get("OPTIONS") or {}))

    def reset(self) -> None:
        with self._lock:
            for instance in self._instances.values():
                getattr(instance, "close", lambda: None)()
            self._instances.clear()


def _build_extractor(cls: type, options: dict[str, Any]):
    return cls(**{k: v for k, v in options.items() if v is not None})


def _build_index(cls: type, options: dict[str, Any]):
    extractor = extractors["default"]
    return cls(extractor_id=extractor.id, dim=extractor.dim, **options)


extractors = AliasRegistry("VISUALSEARCH_EXTRACTORS", _build_extractor)
indexes = AliasRegistry("VISUALSEARCH_INDEXES", _build_index)


def _reset_on_settings_change(*, setting: str, **kwargs) -> None:
    # Indexes depend on the extractor (id, dim); extractors do not depend on indexes, and rebuilding a CNN costs
    # seconds, so only an extractor change drops extractors.
    if setting == "VISUALSEARCH_EXTRACTORS":
        extractors.reset()
    if setting in ("VISUALSEARCH_EXTRACTORS", "VISUALSEARCH_INDEXES", "VISUALSEARCH"):
        indexes.reset()


setting_changed.connect(_reset_on_settings_change, dispatch_uid="visualsearch.registry.reset")


# Setting → the variable TensorFlow reads when its runtime starts.
_TF_THREAD_VARIABLES = {"TF_INTRA_THREADS": "TF_NUM_INTRAOP_THREADS", "TF_INTER_THREADS": "TF_NUM_INTEROP_THREADS"}


def size_tensorflow_threads() -> None:
    """Size TensorFlow's thread pools from settings (AppConfig.ready calls this, before anything runs TensorFlow).

    TensorFlow fixes its pools when its runtime starts, at the first operation (tf.config.threading refuses
    changes after that), and reads these variables then. Setting them instead of calling tf.config spares the
    seconds of importing TensorFlow in processes that never embed (e.g. `reindex` from stored vectors).
    """
    for key, variable in _TF_THREAD_VARIABLES.items():
        threads = settings.VISUALSEARCH.get(key) or 0
        if threads > 0:  # 0: leave TensorFlow's own choice
            os.environ[variable] = str(threads)


def get_extractor(alias: str = "default"):
    return extractors[alias]


def get_index(alias: str = "default"):
    return indexes[alias]
