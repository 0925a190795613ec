"""One rebuild (or rollback) at a time per index alias, across processes and hosts: a lock document in Elasticsearch.

Two rebuilds at once would each drop the other's index. The lock is one document created with op_type=create, which
exactly one creator wins. It names its owner and carries an expiry that the holder pushes forward while it loads, so
a run that crashed blocks the next one for at most ``ttl`` seconds. Every later change to the document is
conditional on the sequence number its holder last saw: a holder whose lock expired and was taken over learns so at
its next renewal and must stop before it touches the aliases. Expiry compares wall clocks: keep hosts in NTP sync.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from elasticsearch import BadRequestError, ConflictError, Elasticsearch, NotFoundError

from ..base import IndexUnavailable

LOCK_ID = "rebuild"
DEFAULT_TTL = 300.0  # seconds without a renewal after which a holder counts as crashed


class RebuildInProgress(IndexUnavailable):
    """Another rebuild or rollback of this index holds the lock, or took it over from us."""


class RebuildLock:
    def __init__(self, client: Elasticsearch, index: str, *, ttl: float = DEFAULT_TTL, replicas: int = 0) -> None:
        self.client = client
        self.index = index
        self.ttl = ttl
        self.replicas = replicas
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._position: dict | None = None  # if_seq_no / if_primary_term of our document while we hold it
        self._renewed_at = 0.0
        self._started = ""

    @contextmanager
    def held(self) -> Iterator[RebuildLock]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def acquire(self) -> None:
        self._ensure_index()
        self._started = _iso(_now_ms())
        for _ in range(3):  # the holder may release between our create and our read: then create again
            try:
                self._hold(self.client.create(index=self.index, id=LOCK_ID, document=self._document()))
                return
            except ConflictError:
                pass
            try:
                current = self.client.get(index=self.index, id=LOCK_ID)
            except NotFoundError:
                continue
            self._take_over_if_expired(current)
            return
        raise RebuildInProgress("another rebuild of this index keeps taking the lock; try again later")

    def renew(self, *, force: bool = False) -> None:
        """Push the expiry forward (at most every tenth of the ttl unless forced); raise if the lock was lost."""
        if not force and time.monotonic() - self._renewed_at < self.ttl / 10:
            return
        if self._position is None:
            raise RebuildInProgress("rebuild lock lost: not held")
        try:
            self._hold(self.client.index(index=self.index, id=LOCK_ID, document=self._document(), **self._position))
        except (ConflictError, NotFoundError) as exc:
            self._position = None
            raise RebuildInProgress("rebuild lock lost: it expired and another run took it over") from exc

    def release(self) -> None:
        if self._position is None:
            return
        try:
            self.client.delete(index=self.index, id=LOCK_ID, **self._position)
        except (ConflictError, NotFoundError):
            pass  # expired and taken over: the new holder's document stays
        self._position = None

    def _take_over_if_expired(self, current) -> None:
        holder = current["_source"]
        if holder.get("expires_at_ms", 0) > _now_ms():
            raise RebuildInProgress(
                f"another rebuild of this index is running ({holder.get('owner')}, started {holder.get('started')}); "
                f"try again when it ends, or after {_iso(holder['expires_at_ms'])} if it crashed"
            )
        position = {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]}
        try:
            self._hold(self.client.index(index=self.index, id=LOCK_ID, document=self._document(), **position))
        except ConflictError as exc:
            raise RebuildInProgress("another rebuild of this index took over the expired lock first") from exc

    def _hold(self, response) -> None:
        self._position = {"if_seq_no": response["_seq_no"], "if_primary_term": response["_primary_term"]}
        self._renewed_at = time.monotonic()

    def _document(self) -> dict:
        now = _now_ms()
        return {"owner": self.owner, "started": self._started, "expires_at_ms": now + int(self.ttl * 1000)}

    def _ensure_index(self) -> None:
        if self.client.indices.exists(index=self.index):
            return
        try:
            self.client.indices.create(
                index=self.index,
                settings={"number_of_shards": 1, "number_of_replicas": self.replicas},
                mappings={"dynamic": False, "properties": {"expires_at_ms": {"type": "long"}}},
            )
        except BadRequestError as exc:
            if "resource_already_exists" not in str(exc):
                raise


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")
