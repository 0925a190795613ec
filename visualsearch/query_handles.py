"""Short-lived handles for shopper queries: a results URL that can be reloaded, shared and paged ("load more")
without uploading the photo again.

The photo is kept in the cache (CACHES; use a shared one, e.g. Redis, when several web processes serve the
site) as a JPEG at the size the search analyses, under the start of its content hash, for QUERY_HANDLE_TTL
seconds. It is never written to the database or to disk by this app.
"""
from __future__ import annotations

import hashlib
import io
import re

from django.conf import settings
from django.core.cache import cache
from PIL import Image

from .imaging import ImageRejected

_HANDLE = re.compile(r"[0-9a-f]{32}")
_PREFIX = "visualsearch:query:"
DEFAULT_TTL_S = 30 * 60


def store(pixels: Image.Image) -> str:
    """Keep the decoded query photo; returns its handle (the same photo always gets the same handle)."""
    buffer = io.BytesIO()
    try:
        pixels.save(buffer, "JPEG", quality=92)
    except (OSError, ValueError) as exc:  # e.g. a side over JPEG's 65 535 pixels
        raise ImageRejected("unsupported", "This photo cannot be kept for its results page.") from exc
    data = buffer.getvalue()
    handle = hashlib.sha256(data).hexdigest()[:32]
    cache.set(_PREFIX + handle, data, timeout=settings.VISUALSEARCH.get("QUERY_HANDLE_TTL", DEFAULT_TTL_S))
    return handle


def load(handle: str) -> bytes | None:
    """The photo behind a handle, or None when the handle is malformed, unknown or expired."""
    if not _HANDLE.fullmatch(handle or ""):
        return None
    return cache.get(_PREFIX + handle)
