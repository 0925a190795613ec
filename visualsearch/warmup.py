"""Load the extractor and the index before the first request needs them (seconds for a CNN)."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.core.signals import request_started
from django.db import connections
from PIL import Image

logger = logging.getLogger(__name__)
DISPATCH_UID = "visualsearch.warmup.first_request"
THREAD_NAME = "visualsearch-warmup"
_lock = threading.Lock()
_started_in: int | None = None  # pid of the process whose warm-up has started


def warm_up() -> None:
    import numpy as np

    from .registry import get_extractor, get_index
    from .services.indexing import ensure_loaded

    started = time.perf_counter()
    try:
        get_extractor().embed_one(Image.new("RGB", (224, 224)))
        index = ensure_loaded(get_index())
        if index.in_process and settings.VISUALSEARCH["RECOGNITION"]["ENABLED"]:
            index.search_words(np.empty(0, dtype=np.int64), limit=1)  # builds the in-process inverted file
    except Exception:  # the site must come up even when the index is down; searches will report it
        logger.exception("visual search warm-up failed")
    else:
        logger.info("visual search warmed up in %.1f s (pid %d)", time.perf_counter() - started, os.getpid())


def _warm_up_thread() -> None:
    try:
        warm_up()
    finally:
        connections.close_all()  # this thread's own connections; nothing else will close them


def warm_up_in_background() -> threading.Thread | None:
    if not settings.VISUALSEARCH.get("WARM_UP", True):
        return None
    thread = threading.Thread(target=_warm_up_thread, name=THREAD_NAME, daemon=True)
    thread.start()
    return thread


def warm_up_on_first_request() -> None:
    """Warm up each serving process on its first request; the web entry points call this instead of warming up.

    Warming up at import would build TensorFlow in the parent of a pre-forking server that imports the application
    before forking (gunicorn --preload), and TensorFlow does not survive a fork. Keyed by pid, so every worker warms
    up once, in itself.
    """
    request_started.connect(_on_request_started, dispatch_uid=DISPATCH_UID)


def warm_up_before_serving(heartbeat: Callable[[], bool] = lambda: True, interval_s: float = 1.0) -> None:
    """Warm up this process now and return when done: for a server's worker hook that runs after the fork and
    before the worker accepts connections (gunicorn's ``post_worker_init``, see gunicorn.conf.py).

    The worker's first request then finds the model built and the index loaded, and starts no second warm-up.
    ``heartbeat`` is called about every ``interval_s`` while waiting, so that the server does not take a long index
    load for a hung worker; it returns False to stop waiting (the worker is shutting down).
    """
    if not _claim(os.getpid()):
        return
    thread = warm_up_in_background()
    while thread is not None and thread.is_alive() and heartbeat():
        thread.join(interval_s)


def _claim(pid: int) -> bool:
    """True for the first caller in process ``pid``: its warm-up is the one that runs."""
    global _started_in
    if _started_in == pid:  # the fast path of every request after the first
        return False
    with _lock:
        if _started_in == pid:
            return False
        _started_in = pid
        return True


def _on_request_started(**kwargs) -> None:
    if _claim(os.getpid()):  # every later request: one comparison
        warm_up_in_background()
