"""Load the extractor and the index before the first request needs them (seconds for a CNN)."""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from PIL import Image

logger = logging.getLogger(__name__)


def warm_up() -> None:
    from .registry import get_extractor, get_index
    from .services.indexing import ensure_loaded

    try:
        get_extractor().embed_one(Image.new("RGB", (224, 224)))
        ensure_loaded(get_index())
    except Exception:  # the site must come up even when the index is down; searches will report it
        logger.exception("visual search warm-up failed")


def warm_up_in_background() -> None:
    if settings.VISUALSEARCH.get("WARM_UP", True):
        threading.Thread(target=warm_up, name="visualsearch-warmup", daemon=True).start()
