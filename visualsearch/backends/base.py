"""The vector-index interface. Plain data in and out: ids, vectors, scores; never ORM objects."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class IndexEntry:
    """One indexed photo: its vector plus the product fields searches filter and group on."""

    image_id: int
    product_id: int
    vector: np.ndarray = field(repr=False)
    category: str = ""
    is_active: bool = True
    # Visual-word ids of the photo's local features (repeats = term frequency), for the candidate stage of
    # recognition; None when the photo has none (recognition off, no vocabulary yet, textureless photo).
    words: np.ndarray | None = field(default=None, repr=False)
    price: float | None = None  # None: no price (a price filter leaves the photo out)
    in_stock: bool = True


@dataclass(frozen=True)
class SearchFilters:
    active_only: bool = True
    category: str | None = None
    # Shopper filters, applied before ranking (a product without a price never passes a price bound).
    min_price: float | None = None
    max_price: float | None = None
    in_stock_only: bool = False
    # Photos to leave out *before* grouping, so their product can still match through its other photos
    # ("more like this" without the query photo itself; evaluation of `both` rows).
    exclude_image_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SearchHit:
    """The best-matching photo of one product; ``score`` is the cosine similarity in [-1, 1]."""

    product_id: int
    image_id: int
    score: float


class IndexUnavailable(Exception):
    """The index cannot be reached or answered too slowly; callers turn this into 503 / a pending status."""


class EntriesRejected(Exception):
    """The index refused some entries for what they are (a malformed document, e.g. a vector that is not unit
    length); every other entry of the write was written. ``rejected``: image id → the index's reason."""

    def __init__(self, rejected: dict[int, str]) -> None:
        first = next(iter(rejected.items()), (None, ""))
        super().__init__(f"{len(rejected)} entr{'y' if len(rejected) == 1 else 'ies'} rejected, e.g. {first[0]}: {first[1]}")
        self.rejected = rejected


class VectorIndex(ABC):
    """A kNN index over unit vectors of one extractor, grouped by product at query time.

    Backends declare what they cannot do exactly rather than silently differing: ``exact`` is False for
    approximate (ANN) indexes, whose results the contract suite checks by recall instead of equality.
    """

    exact: bool = True
    in_process: bool = False  # True: lives in this process and must be loaded from the stored vectors

    def __init__(self, *, extractor_id: str, dim: int, **options) -> None:
        self.extractor_id = extractor_id
        self.dim = dim

    @abstractmethod
    def upsert(self, entries: Sequence[IndexEntry], *, version: int | None = None) -> None:
        """Insert or replace entries (by image_id), as one batch.

        ``version`` (microseconds, taken before the data was read from the database) keeps the newest data when
        writes of one photo arrive out of order (two syncs, a sync and a rebuild): every backend ignores a write
        older than the last one applied to that photo, or than its delete. ``None``: now."""

    @abstractmethod
    def delete(self, image_ids: Sequence[int], *, version: int | None = None) -> None:
        """Remove entries; unknown ids are ignored. ``version`` as for ``upsert``: a later, older upsert of a deleted
        photo is ignored too (backends remember deletes for a while, not forever)."""

    @abstractmethod
    def search(
        self,
        vector: np.ndarray,
        *,
        limit: int,
        offset: int = 0,
        threshold: float | None = None,
        filters: SearchFilters = SearchFilters(),
    ) -> list[SearchHit]:
        """Products ranked by their best photo's similarity, one hit per product, best first."""

    def search_words(self, words: np.ndarray, *, limit: int, filters: SearchFilters = SearchFilters()) -> list[SearchHit]:
        """Photos ranked by BM25 over shared visual words (k1 = 1.2, b = 0.75; query words counted once), best
        first, ``limit`` photos (not grouped by product: recognition verifies photos). ``score`` is the BM25 score."""
        raise NotImplementedError(f"{type(self).__name__} has no visual-word index")

    @abstractmethod
    def count(self) -> int:
        """Number of indexed photos (as visible to searches)."""

    @abstractmethod
    def image_ids(self) -> set[int]:
        """All indexed photo ids; used to verify an index against the database."""

    @abstractmethod
    def rebuild(self, entries: Iterable[IndexEntry], *, expected_count: int | Callable[[], int] | None = None) -> int:
        """Replace the whole content with ``entries`` without a moment where searches see a partial index.

        ``expected_count`` (or a callable giving it, evaluated after loading, since writes may land meanwhile) is
        what the new content must hold before it goes live. Returns the number of entries loaded."""

    def refresh(self) -> None:
        """Make every write so far visible to searches (near-real-time indexes); a no-op where writes are instant."""

    def rollback(self) -> None:
        """Switch back to the index that the last rebuild replaced, where the backend keeps one."""
        raise NotImplementedError(f"{type(self).__name__} keeps no previous index to roll back to")

    def close(self) -> None:
        """Release connections; the registry calls it when settings change."""

    def check(self) -> list[str]:
        """Problems that make the index unusable (for system checks and health endpoints)."""
        return []
