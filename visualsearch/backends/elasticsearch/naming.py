"""Index and alias names: one concrete index per build, per extractor, behind aliases.

  <prefix>__<extractor>               read alias: the live index searches use
  <prefix>__<extractor>__write        write alias: every index that must receive writes (live, previous, building)
  <prefix>__<extractor>__<timestamp>  concrete indexes, newest last
  <prefix>__<extractor>__lock         the rebuild lock (one document)
  <prefix>__<extractor>__guard        index template: the cluster may not auto-create `<prefix>__<extractor>__*`
"""
from __future__ import annotations

import re
from datetime import datetime, timezone


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-")


def read_alias(prefix: str, extractor_id: str) -> str:
    return f"{_slug(prefix)}__{_slug(extractor_id)}"


def write_alias(prefix: str, extractor_id: str) -> str:
    return read_alias(prefix, extractor_id) + "__write"


def new_concrete_name(prefix: str, extractor_id: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%S%f")
    return f"{read_alias(prefix, extractor_id)}__{stamp}"



def lock_index(prefix: str, extractor_id: str) -> str:
    return read_alias(prefix, extractor_id) + "__lock"


def guard_template(prefix: str, extractor_id: str) -> str:
    return read_alias(prefix, extractor_id) + "__guard"


def own_names(prefix: str, extractor_id: str) -> str:
    """The pattern every index of this alias matches (concrete builds and the lock)."""
    return read_alias(prefix, extractor_id) + "__*"
