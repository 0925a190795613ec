"""Process-wide thread pools for the bulk paths (decoding, local-feature analysis)."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor


def ordered_map(name: str, function: Callable, items: Iterable, workers: int) -> Iterator:
    """``function(item)`` for each item, results in order, ``workers`` at a time in the pool called ``name``; in the
    calling thread when ``workers`` ≤ 1. The work must release the GIL (Pillow, OpenCV, numpy) to gain anything."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return map(function, items)
    return _pool(name, workers).map(function, items)


@functools.cache
def _pool(name: str, workers: int) -> ThreadPoolExecutor:
    """Kept for the process's life: a pool per call would start new threads, and each new thread may get a fresh
    malloc arena that keeps what it freed (a recognition reindex peaked ~360 MB higher that way)."""
    return ThreadPoolExecutor(workers, thread_name_prefix=f"visualsearch-{name}")
