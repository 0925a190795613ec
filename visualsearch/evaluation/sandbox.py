"""A throw-away catalog for one evaluation: nothing it writes survives, and the shop's index is never touched.

Three walls: a database transaction that is always rolled back (products, photos, stored vectors), a temporary
MEDIA_ROOT (the copied photo files), and a separate index (a fresh in-process one, or an Elasticsearch alias of its
own that is deleted afterwards). The registry drops its cached index when VISUALSEARCH_INDEXES is overridden.
"""
from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import transaction
from django.test import override_settings

from ..registry import get_index

logger = logging.getLogger(__name__)

EMBEDDED = "visualsearch.backends.embedded.EmbeddedIndex"
ELASTICSEARCH = "visualsearch.backends.elasticsearch.ElasticsearchIndex"
BACKENDS = {"embedded": EMBEDDED, "elasticsearch": ELASTICSEARCH}


class SandboxError(Exception):
    """The requested evaluation setup cannot be built (e.g. Elasticsearch without a URL)."""


def configured_backend() -> str:
    """The backend name of the shop's configured index."""
    return "elasticsearch" if settings.VISUALSEARCH_INDEXES["default"]["BACKEND"] == ELASTICSEARCH else "embedded"


def index_config(backend: str) -> dict[str, Any]:
    """Settings for an evaluation index of ``backend``; Elasticsearch reuses the configured server and tuning."""
    if backend == "embedded":
        return {"BACKEND": EMBEDDED, "OPTIONS": {}}
    if backend != "elasticsearch":
        raise SandboxError(f"unknown backend {backend!r} (expected {' or '.join(BACKENDS)})")
    url = getattr(settings, "ELASTICSEARCH_URL", "") or os.environ.get("ELASTICSEARCH_URL", "")
    if not url:
        raise SandboxError("--backend elasticsearch needs ELASTICSEARCH_URL (setting or environment variable)")
    configured = settings.VISUALSEARCH_INDEXES["default"]
    if configured["BACKEND"] == ELASTICSEARCH:
        return {"BACKEND": ELASTICSEARCH, "OPTIONS": dict(configured.get("OPTIONS") or {})}
    return {"BACKEND": ELASTICSEARCH, "OPTIONS": {"hosts": [u.strip() for u in url.split(",") if u.strip()]}}


def new_namespace() -> str:
    """A name no shop data uses: the category of the evaluation's products and the prefix of its ES indexes."""
    return f"eval-{secrets.token_hex(4)}"


@contextmanager
def sandbox(*, namespace: str, index: dict[str, Any], extractor_alias: str = "default") -> Iterator[None]:
    """Run the body against a throw-away catalog and index; everything is rolled back or deleted on exit."""
    index = _isolated(index, namespace)
    overrides = {"VISUALSEARCH_INDEXES": {"default": index}, **_extractor_overrides(extractor_alias)}
    with tempfile.TemporaryDirectory(prefix="evaluate-media-") as media:
        with override_settings(MEDIA_ROOT=media, **overrides):
            try:
                with transaction.atomic():
                    try:
                        yield
                    finally:
                        transaction.set_rollback(True)
            finally:
                if index["BACKEND"] == ELASTICSEARCH:
                    _drop_elasticsearch_indexes(namespace)


def _isolated(config: dict[str, Any], namespace: str) -> dict[str, Any]:
    if config["BACKEND"] != ELASTICSEARCH:
        return config
    return {**config, "OPTIONS": {**(config.get("OPTIONS") or {}), "alias": namespace}}


def _extractor_overrides(alias: str) -> dict[str, Any]:
    """Make ``alias`` the "default" extractor, which is the one the services use."""
    configs = settings.VISUALSEARCH_EXTRACTORS
    if alias not in configs:
        raise SandboxError(f"no extractor alias {alias!r} in VISUALSEARCH_EXTRACTORS (have: {', '.join(configs)})")
    if configs[alias] == configs["default"]:
        return {}  # already the default: overriding would only rebuild the same CNN (seconds)
    return {"VISUALSEARCH_EXTRACTORS": {**configs, "default": configs[alias]}}


def _drop_elasticsearch_indexes(namespace: str) -> None:
    """Delete every index under the evaluation's alias prefix, by exact name: clusters usually refuse wildcard
    deletes (action.destructive_requires_name)."""
    try:
        client = get_index().client
        names = list(client.indices.get(index=f"{namespace}*", expand_wildcards="all"))
        if names:
            client.indices.delete(index=",".join(names))
    except Exception:  # the evaluation's numbers are still good; say what to clean up by hand
        logger.exception("could not delete the evaluation's Elasticsearch indexes %s*; delete them by hand", namespace)
