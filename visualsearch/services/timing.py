"""Per-stage wall-clock timings of one search, reported by the API (``timings_ms``) and `evaluate`."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's duration in ms to ``timings[name]`` (a stage may run more than once per search)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000
