"""Access to the real MariaDB / Elasticsearch servers started by scripts/services.sh.

Service tests skip, loudly, where the servers are not configured, so `make test` passes on a laptop. CI sets
REQUIRE_SERVICES=1, which turns every such skip into a failure: CI can never go green by skipping.
"""
from __future__ import annotations

import os

import pytest
from django.conf import settings


def require(service: str, available: bool, how: str) -> None:
    if available:
        return
    message = f"{service} not available ({how})"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1 but {message}", pytrace=False)
    pytest.skip(f"SERVICE TEST SKIPPED: {message}")


def elasticsearch_url() -> str:
    url = os.environ.get("ELASTICSEARCH_URL", "")
    require("Elasticsearch", bool(url), "set ELASTICSEARCH_URL, e.g. via `bash scripts/services.sh start`")
    return url.split(",")[0]


def elasticsearch_cluster_urls() -> list[str]:
    """The nodes of the multi-node cluster for the node-loss test (a cluster of its own: the test kills nodes)."""
    urls = [u for u in os.environ.get("ELASTICSEARCH_CLUSTER_URL", "").split(",") if u]
    require("An Elasticsearch cluster of 3+ nodes", len(urls) >= 3,
            "set ELASTICSEARCH_CLUSTER_URL, e.g. ES_PORT=9250 bash scripts/services.sh start elasticsearch --es-nodes 3 "
            "and the URLs `ES_PORT=9250 bash scripts/services.sh env --es-nodes 3` prints")
    return urls


def uses_elasticsearch() -> bool:
    return settings.VISUALSEARCH_INDEXES["default"]["BACKEND"].startswith("visualsearch.backends.elasticsearch")


def uses_mysql() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.mysql"


def delete_indexes(client, pattern: str) -> None:
    """Delete the indexes matching a pattern, by name: servers with `action.destructive_requires_name` (the default
    since Elasticsearch 8) refuse wildcard deletes."""
    names = list(client.indices.get(index=pattern, allow_no_indices=True, ignore_unavailable=True))
    if names:
        client.indices.delete(index=",".join(names), ignore_unavailable=True)
    client.options(ignore_status=404).indices.delete_index_template(name=pattern)  # the backend's guard template


def database_url() -> str:
    """The URL of the database this test run uses (the test database), for processes the test starts."""
    from django.db import connection

    db = connection.settings_dict
    return f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"
