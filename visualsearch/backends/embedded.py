"""The in-process index: exact cosine similarity with numpy over a matrix held in memory.

Zero configuration and exact, which makes it the default and the reference the contract suite checks against.
Good to a few hundred thousand photos on one machine; beyond that, or with several web processes, use Elasticsearch.

Concurrency: the arrays are an immutable snapshot replaced wholesale on every write (copy-on-write), so
searches read a consistent snapshot without taking the lock and writes serialise on it.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .base import IndexEntry, SearchFilters, SearchHit, VectorIndex


@dataclass(frozen=True)
class _Snapshot:
    image_ids: np.ndarray  # int64 (n,)
    product_ids: np.ndarray  # int64 (n,)
    active: np.ndarray  # bool (n,)
    categories: np.ndarray  # object (n,)
    matrix: np.ndarray  # float32 (n, dim), unit rows

    @classmethod
    def empty(cls, dim: int) -> _Snapshot:
        return cls._from_entries([], dim)

    @classmethod
    def _from_entries(cls, entries: Sequence[IndexEntry], dim: int) -> _Snapshot:
        matrix = np.empty((len(entries), dim), dtype=np.float32)
        for row, entry in enumerate(entries):
            matrix[row] = entry.vector
        return cls(
            image_ids=np.fromiter((e.image_id for e in entries), dtype=np.int64, count=len(entries)),
            product_ids=np.fromiter((e.product_id for e in entries), dtype=np.int64, count=len(entries)),
            active=np.fromiter((e.is_active for e in entries), dtype=bool, count=len(entries)),
            categories=np.array([e.category for e in entries], dtype=object),
            matrix=matrix,
        )

    def without(self, image_ids: Iterable[int]) -> _Snapshot:
        keep = ~np.isin(self.image_ids, np.fromiter(image_ids, dtype=np.int64))
        return _Snapshot(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))

    def plus(self, other: _Snapshot) -> _Snapshot:
        return _Snapshot(
            *(np.concatenate([getattr(self, f), getattr(other, f)]) for f in self.__dataclass_fields__)
        )


class EmbeddedIndex(VectorIndex):
    in_process = True

    def __init__(self, *, extractor_id: str, dim: int, **options) -> None:
        super().__init__(extractor_id=extractor_id, dim=dim)
        self._snapshot = _Snapshot.empty(dim)
        self._write_lock = threading.Lock()
        self.loaded_generation: int | None = None  # set by services after a load from the database

    def upsert(self, entries: Sequence[IndexEntry], *, version: int | None = None) -> None:
        entries = _last_per_image(entries)
        if not entries:
            return
        for entry in entries:
            _check_vector(entry.vector, self.dim)
        new_rows = _Snapshot._from_entries(entries, self.dim)
        with self._write_lock:
            self._snapshot = self._snapshot.without(e.image_id for e in entries).plus(new_rows)

    def delete(self, image_ids: Sequence[int], *, version: int | None = None) -> None:
        with self._write_lock:
            self._snapshot = self._snapshot.without(image_ids)

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

    def count(self) -> int:
        return len(self._snapshot.image_ids)

    def image_ids(self) -> set[int]:
        return set(self._snapshot.image_ids.tolist())

    def rebuild(self, entries: Iterable[IndexEntry], *, expected_count=None) -> int:
        entries = _last_per_image(list(entries))
        for entry in entries:
            _check_vector(entry.vector, self.dim)
        fresh = _Snapshot._from_entries(entries, self.dim)
        expected_count = expected_count() if callable(expected_count) else expected_count
        if expected_count is not None and len(entries) != expected_count:
            raise ValueError(f"rebuild loaded {len(entries)} entries, expected {expected_count}")
        self._snapshot = fresh
        return len(entries)


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
    mask = np.ones(len(snap.image_ids), dtype=bool)
    if filters.active_only:
        mask &= snap.active
    if filters.category is not None:
        mask &= snap.categories == filters.category
    if filters.exclude_image_ids:
        mask &= ~np.isin(snap.image_ids, np.fromiter(filters.exclude_image_ids, dtype=np.int64))
    return mask


def _last_per_image(entries: Sequence[IndexEntry]) -> list[IndexEntry]:
    """Within one batch the last entry for an image wins, as with sequential upserts."""
    return list({entry.image_id: entry for entry in entries}.values())


def _check_vector(vector: np.ndarray, dim: int) -> None:
    if np.shape(vector) != (dim,):
        raise ValueError(f"vector has shape {np.shape(vector)}, index expects ({dim},)")
