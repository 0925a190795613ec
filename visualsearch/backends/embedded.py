"""The in-process index: exact cosine similarity with numpy over a matrix held in memory.

Zero configuration and exact, which makes it the default and the reference the contract suite checks against.
Good to a few hundred thousand photos on one machine; beyond that, or with several web processes, use Elasticsearch.

Concurrency: rows are append-only. A write fills rows past the end every published snapshot sees, then publishes a
new snapshot (views of the same buffers plus a fresh liveness mask); a replaced or deleted row is only masked out.
So searches read a consistent snapshot without taking the lock, writes serialise on it, and a write costs its own
rows plus one bool per row, not a copy of the matrix. The buffers grow by a factor when full, dropping dead rows
on the way: the only matrix copy, amortised O(1) per written row.

Versions: like Elasticsearch's external versions, a write older than the last one applied to a photo (or than its
delete, or than the last rebuild) is ignored, so two syncs of one photo finishing out of order keep the newest.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..recognition.inverted_file import InvertedFile
from .base import IndexEntry, SearchFilters, SearchHit, VectorIndex

GROWTH = 1.25  # capacity after a regrow, relative to the live rows: memory headroom vs. how often the matrix is copied
MIN_CAPACITY = 64
REBUILD_CHUNK = 1024
# How long a delete remembers its version, as `gc_deletes` on our Elasticsearch indexes: a write older than a
# delete that arrives later than this could bring the photo back (a sync would have to stall for half an hour).
TOMBSTONE_TTL_US = 30 * 60 * 1_000_000


@dataclass(frozen=True)
class _Snapshot:
    """What one search reads: views of the first ``n`` rows, which no write touches again, and their liveness."""

    image_ids: np.ndarray  # int64 (n,)
    product_ids: np.ndarray  # int64 (n,)
    active: np.ndarray  # bool (n,)
    categories: np.ndarray  # object (n,)
    prices: np.ndarray  # float64 (n,), NaN = no price
    in_stock: np.ndarray  # bool (n,)
    matrix: np.ndarray  # float32 (n, dim), unit rows
    words: np.ndarray  # object (n,): int64 visual-word ids per row, or None
    live: np.ndarray  # bool (n,): False for rows replaced or deleted since they were written
    count: int


_COLUMNS = ("image_ids", "product_ids", "active", "categories", "prices", "in_stock", "matrix", "words")


@dataclass(frozen=True)
class _Block:
    """Entries as columns, ready to append: holds the vectors once, in one array."""

    image_ids: np.ndarray
    product_ids: np.ndarray
    active: np.ndarray
    categories: np.ndarray
    prices: np.ndarray
    in_stock: np.ndarray
    matrix: np.ndarray
    words: np.ndarray

    @classmethod
    def of(cls, entries: Sequence[IndexEntry], dim: int) -> _Block:
        """One entry per image (the last wins, as with sequential upserts), vectors checked against ``dim``."""
        entries = list({entry.image_id: entry for entry in entries}.values())
        for entry in entries:
            if np.shape(entry.vector) != (dim,):
                raise ValueError(f"vector has shape {np.shape(entry.vector)}, index expects ({dim},)")
        categories = np.empty(len(entries), dtype=object)
        categories[:] = [e.category for e in entries]
        words = np.empty(len(entries), dtype=object)
        words[:] = [None if e.words is None else np.asarray(e.words, dtype=np.int64) for e in entries]
        return cls(
            image_ids=np.array([e.image_id for e in entries], dtype=np.int64),
            product_ids=np.array([e.product_id for e in entries], dtype=np.int64),
            active=np.array([e.is_active for e in entries], dtype=bool),
            categories=categories,
            prices=np.array([np.nan if e.price is None else e.price for e in entries], dtype=np.float64),
            in_stock=np.array([e.in_stock for e in entries], dtype=bool),
            matrix=np.array([e.vector for e in entries], dtype=np.float32).reshape(len(entries), dim),
            words=words,
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    def only(self, image_ids: set[int]) -> _Block:
        keep = np.isin(self.image_ids, np.fromiter(image_ids, dtype=np.int64, count=len(image_ids)))
        return self if keep.all() else _Block(*(getattr(self, name)[keep] for name in _COLUMNS))


class _Rows:
    """Writer-side state: preallocated append-only buffers, the live mask, and each photo's current row."""

    def __init__(self, dim: int, capacity: int = MIN_CAPACITY) -> None:
        self.dim = dim
        self.matrix = np.empty((capacity, dim), dtype=np.float32)
        self.image_ids = np.empty(capacity, dtype=np.int64)
        self.product_ids = np.empty(capacity, dtype=np.int64)
        self.active = np.empty(capacity, dtype=bool)
        self.categories = np.empty(capacity, dtype=object)
        self.prices = np.empty(capacity, dtype=np.float64)
        self.in_stock = np.empty(capacity, dtype=bool)
        self.words = np.empty(capacity, dtype=object)
        self.size = 0
        self.live = np.zeros(0, dtype=bool)
        self.row_of: dict[int, int] = {}

    def put(self, block: _Block) -> None:
        """Append a block (one entry per image id) and mask out the rows it replaces."""
        if self.size + len(block) > len(self.matrix):
            self._regrow(len(block))
        start, end = self.size, self.size + len(block)
        for name in _COLUMNS:
            getattr(self, name)[start:end] = getattr(block, name)
        live = np.ones(end, dtype=bool)  # a fresh mask: published snapshots keep theirs
        live[:start] = self.live
        for row, image_id in enumerate(block.image_ids.tolist(), start):
            replaced = self.row_of.get(image_id)
            if replaced is not None:
                live[replaced] = False
            self.row_of[image_id] = row
        self.size, self.live = end, live

    def drop(self, image_ids: Iterable[int]) -> bool:
        rows = [self.row_of.pop(i) for i in image_ids if i in self.row_of]
        if rows:
            live = self.live.copy()
            live[rows] = False
            self.live = live
        return bool(rows)

    def snapshot(self) -> _Snapshot:
        n = self.size
        return _Snapshot(*(getattr(self, name)[:n] for name in _COLUMNS), live=self.live, count=len(self.row_of))

    def _regrow(self, extra: int) -> None:
        """New buffers holding only the live rows, with room to grow; the old ones stay intact for old snapshots."""
        keep = np.flatnonzero(self.live)
        fresh = _Rows(self.dim, max(MIN_CAPACITY, int((len(keep) + extra) * GROWTH)))
        for name in _COLUMNS:  # mode="clip": the default ("raise") first copies into a temporary buffer
            np.take(getattr(self, name), keep, axis=0, out=getattr(fresh, name)[: len(keep)], mode="clip")
        fresh.size, fresh.live = len(keep), np.ones(len(keep), dtype=bool)
        fresh.row_of = dict(zip(fresh.image_ids[: len(keep)].tolist(), range(len(keep))))
        self.__dict__.update(fresh.__dict__)


class _Versions:
    """The version of the last write per photo, tombstones for deleted ones, and a floor: the last rebuild's."""

    def __init__(self, floor: int = 0) -> None:
        self.floor = floor
        self.written: dict[int, int] = {}
        self.tombstones: dict[int, int] = {}  # in deletion order, which is about version order: pruned from the front

    def newest(self, image_ids: Iterable[int], version: int | None) -> list[int]:
        """The ids this write may change; ``None`` (callers that write in order) changes all."""
        if version is None:
            return list(image_ids)
        return [i for i in image_ids if version >= self.written.get(i, self.tombstones.get(i, self.floor))]

    def record_write(self, image_ids: Iterable[int], version: int | None) -> None:
        stamp = _now_us() if version is None else version
        for image_id in image_ids:
            self.tombstones.pop(image_id, None)
            self.written[image_id] = stamp

    def record_delete(self, image_ids: Iterable[int], version: int | None) -> None:
        stamp = _now_us() if version is None else version
        for image_id in image_ids:
            self.written.pop(image_id, None)
            self.tombstones.pop(image_id, None)  # re-inserted at the end, keeping the order
            self.tombstones[image_id] = stamp
        cutoff = max(self.floor, stamp - TOMBSTONE_TTL_US)
        while self.tombstones and next(iter(self.tombstones.values())) < cutoff:
            del self.tombstones[next(iter(self.tombstones))]


class EmbeddedIndex(VectorIndex):
    in_process = True

    def __init__(self, *, extractor_id: str, dim: int, **options) -> None:
        super().__init__(extractor_id=extractor_id, dim=dim)
        self._rows = _Rows(dim)
        self._versions = _Versions()
        self._snapshot = self._rows.snapshot()
        self._write_lock = threading.Lock()
        self._word_index: tuple[_Snapshot, np.ndarray, InvertedFile] | None = None
        self.loaded_generation: int | None = None  # set by services after a load from the database

    def upsert(self, entries: Sequence[IndexEntry], *, version: int | None = None) -> None:
        block = _Block.of(entries, self.dim)
        with self._write_lock:
            wanted = self._versions.newest(block.image_ids.tolist(), version)
            if not wanted:
                return
            self._rows.put(block.only(set(wanted)))
            self._versions.record_write(wanted, version)
            self._snapshot = self._rows.snapshot()

    def delete(self, image_ids: Sequence[int], *, version: int | None = None) -> None:
        with self._write_lock:
            image_ids = self._versions.newest(dict.fromkeys(int(i) for i in image_ids), version)
            self._versions.record_delete(image_ids, version)
            if self._rows.drop(image_ids):
                self._snapshot = self._rows.snapshot()

    def search(self, vector, *, limit, offset=0, threshold=None, filters=SearchFilters()) -> list[SearchHit]:
        snap = self._snapshot  # one consistent view for the whole query
        scores = snap.matrix @ np.asarray(vector, dtype=np.float32)  # no row copy: score all, then mask
        eligible = _filter_mask(snap, filters)
        if threshold is not None:
            eligible &= scores >= threshold
        candidates = np.flatnonzero(eligible)
        wanted = offset + limit
        window = min(len(candidates), max(4 * wanted, 64))
        while True:
            rows = _best_first(snap, scores, candidates, window)
            products = _first_per_product(snap, rows)
            if len(products) >= wanted or window >= len(candidates):
                break
            window = min(len(candidates), window * 4)  # too many photos of the same products: look further
        page = products[offset:wanted]
        return [SearchHit(int(snap.product_ids[r]), int(snap.image_ids[r]), float(scores[r])) for r in page]

    def search_words(self, words, *, limit, filters=SearchFilters()) -> list[SearchHit]:
        snap = self._snapshot
        rows, inverted = self._inverted_file(snap)
        scores = inverted.scores(np.asarray(words, dtype=np.int64), max_terms=len(words) or 1)
        eligible = _filter_mask(snap, filters)[rows] & (scores > 0)
        candidates = np.flatnonzero(eligible)
        if len(candidates) > limit:
            cutoff = -np.partition(-scores[candidates], limit - 1)[limit - 1]
            candidates = candidates[scores[candidates] >= cutoff]
        ranked = candidates[np.lexsort((snap.image_ids[rows[candidates]], -scores[candidates]))][:limit]
        return [SearchHit(int(snap.product_ids[rows[i]]), int(snap.image_ids[rows[i]]), float(scores[i]))
                for i in ranked]

    def _inverted_file(self, snap: _Snapshot) -> tuple[np.ndarray, InvertedFile]:
        """The inverted file of a snapshot's live rows, built on the first word search after a write.

        Built whole rather than updated in place: BM25's statistics (document frequencies, average length) change
        with every write anyway. ~0.1 s per 10,000 photos; a catalog with constant writes and many word searches
        is better served by Elasticsearch, which maintains its postings incrementally."""
        cached = self._word_index
        if cached is not None and cached[0] is snap:
            return cached[1], cached[2]
        rows = np.flatnonzero(snap.live & np.array([w is not None for w in snap.words], dtype=bool))
        word_lists = [snap.words[r] for r in rows]
        size = 1 + max((int(w.max()) for w in word_lists if len(w)), default=0)
        inverted = InvertedFile.build(word_lists, size)
        self._word_index = (snap, rows, inverted)
        return rows, inverted

    def count(self) -> int:
        return self._snapshot.count

    def image_ids(self) -> set[int]:
        snap = self._snapshot
        return set(snap.image_ids[snap.live].tolist())

    def tombstone_count(self) -> int:
        return len(self._versions.tombstones)

    def rebuild(self, entries: Iterable[IndexEntry], *, expected_count=None) -> int:
        # Taken before the first entry is read (callers pass a lazy database read): any write older than this is
        # already in what is loaded, so it is ignored if it arrives afterwards.
        floor = _now_us()
        blocks = [_Block.of(chunk, self.dim) for chunk in _chunks(entries, REBUILD_CHUNK)]
        total = sum(len(block) for block in blocks)
        rows = _Rows(self.dim, total + max(MIN_CAPACITY, total // 8))  # room for writes before the first regrow
        while blocks:
            rows.put(blocks.pop(0))  # each block freed once copied
        expected_count = expected_count() if callable(expected_count) else expected_count
        if expected_count is not None and len(rows.row_of) != expected_count:
            raise ValueError(f"rebuild loaded {len(rows.row_of)} entries, expected {expected_count}")
        with self._write_lock:
            self._rows, self._versions = rows, _Versions(floor)
            self._snapshot = rows.snapshot()
        return len(rows.row_of)


def _best_first(snap: _Snapshot, scores: np.ndarray, candidates: np.ndarray, window: int) -> np.ndarray:
    """The ``window`` highest-scoring candidate rows, best first, ties broken by image id (deterministic).

    Exact for grouping: a product absent from the window has no photo scoring above any photo in it.
    """
    if window < len(candidates):
        # Keep every candidate tied with the window's last score too: cutting inside a tie would make the
        # choice arbitrary, and pages would repeat or skip products that share a photo (placeholders).
        cutoff = -np.partition(-scores[candidates], window - 1)[window - 1]
        candidates = candidates[scores[candidates] >= cutoff]
    return candidates[np.lexsort((snap.image_ids[candidates], -scores[candidates]))]


def _first_per_product(snap: _Snapshot, rows: np.ndarray) -> np.ndarray:
    """Rows of each product's best photo, in rank order."""
    _, first = np.unique(snap.product_ids[rows], return_index=True)
    return rows[np.sort(first)]


def _filter_mask(snap: _Snapshot, filters: SearchFilters) -> np.ndarray:
    mask = snap.live.copy()
    if filters.active_only:
        mask &= snap.active
    if filters.category is not None:
        mask &= snap.categories == filters.category
    if filters.min_price is not None:
        mask &= snap.prices >= filters.min_price  # NaN (no price) compares False
    if filters.max_price is not None:
        mask &= snap.prices <= filters.max_price
    if filters.in_stock_only:
        mask &= snap.in_stock
    if filters.exclude_image_ids:
        mask &= ~np.isin(snap.image_ids, np.fromiter(filters.exclude_image_ids, dtype=np.int64))
    return mask


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _now_us() -> int:
    return time.time_ns() // 1000
