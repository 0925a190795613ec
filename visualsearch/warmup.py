"""Load the extractor and the index before the first request needs them (seconds for a CNN)."""
from __future__ import annotations

import logging
import os
import threading

from django.conf import settings
from django.core.signals import request_started
from PIL import Image

logger = logging.getLogger(__name__)
DISPATCH_UID = "visualsearch.warmup.first_request"
_lock = threading.Lock()
_started_in: int | None = None  # pid of the process whose warm-up has started


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


def warm_up_on_first_request() -> None:
    """Warm up each serving process on its first request; the web entry points call this instead of warming up.

    Warming up at import would build TensorFlow in the parent of a pre-forking server that imports the application
    before forking (gunicorn --preload), and TensorFlow does not survive a fork. Keyed by pid, so every worker warms
    up once, in itself.
    """
    request_started.connect(_on_request_started, dispatch_uid=DISPATCH_UID)


def _on_request_started(**kwargs) -> None:
    global _started_in
    pid = os.getpid()
    if _started_in == pid:  # every later request: one comparison
        return
    with _lock:
        if _started_in == pid:
            return
        _started_in = pid
    warm_up_in_background()
