"""Elasticsearch helpers for benchmarks: unique index prefixes, settling merges, and deleting what a run created."""
from __future__ import annotations

import time
import uuid

from elasticsearch import Elasticsearch, NotFoundError


def unique_prefix(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:8]}"


def client(url: str, timeout: float = 120) -> Elasticsearch:
    return Elasticsearch([url], request_timeout=timeout)


def delete_indexes(url: str, prefix: str) -> list[str]:
    """Delete every index whose name starts with ``prefix`` (by name: a cluster may forbid wildcard deletes)."""
    es = client(url)
    try:
        names = sorted(es.indices.get(index=f"{prefix}*", expand_wildcards="all").body)
    except NotFoundError:
        names = []
    for name in names:
        es.indices.delete(index=name, ignore_unavailable=True)
    es.close()
    return names


def wait_for_merges(es: Elasticsearch, index: str, timeout_s: float = 300) -> float:
    """Wait until no merge runs on ``index`` (background merges would compete with the queries we time)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        stats = es.indices.stats(index=index, metric="merge")
        if stats["_all"]["total"]["merges"]["current"] == 0:
            break
        time.sleep(1)
    return time.monotonic() - started


def segment_count(es: Elasticsearch, index: str) -> int:
    return len(es.cat.segments(index=index, format="json").body)
