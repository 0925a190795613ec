"""Where index work runs: inline after commit (embedded default) or on Celery workers (production)."""
from __future__ import annotations

import logging
from collections.abc import Iterable

from concurrent.futures import ThreadPoolExecutor

from django import db
from django.conf import settings

logger = logging.getLogger(__name__)

# An admin selection larger than this is not indexed inside the web request when the runner is inline: the photos
# are marked pending (the durable record `reindex --missing` works from) and indexed by one background thread of
# the web process, this many at a time; if the process stops first, they stay pending for `reindex --missing`.
MAX_INLINE_IMAGES = 64
# Photos per Celery task: a large batch becomes several bounded tasks that several workers can share.
MAX_TASK_IMAGES = 256


def runs_inline() -> bool:
    return settings.VISUALSEARCH["TASK_RUNNER"] != "celery"


def schedule_sync(*, image_ids: Iterable[int] = (), product_ids: Iterable[int] = ()) -> None:
    image_ids, product_ids = sorted(set(image_ids)), sorted(set(product_ids))
    if not image_ids and not product_ids:
        return
    if runs_inline():
        run_sync(image_ids=image_ids, product_ids=product_ids)
        return
    from .celery_tasks import sync_index_task

    chunks = [image_ids[i : i + MAX_TASK_IMAGES] for i in range(0, len(image_ids), MAX_TASK_IMAGES)] or [[]]
    try:
        for n, chunk in enumerate(chunks):
            # Product ids ride with the first chunk only; their photos are re-sent from stored vectors (no model).
            sync_index_task.delay(image_ids=chunk, product_ids=product_ids if n == 0 else [])
    except Exception as exc:  # noqa: BLE001 — kombu/redis raise per transport; the save must stand either way
        # The photos are `pending` in the database (the durable record): `reindex --missing` catches them up.
        logger.warning("broker unavailable, %d photo(s) left pending for `reindex --missing`: %s", len(image_ids), exc)


def schedule_reindex(image_ids: list[int]) -> bool:
    """Index photos an admin selected (already marked pending). True when done inside this request; False when
    queued: on Celery workers, or (inline runner) a selection too large for a web request, on a background thread."""
    if not runs_inline():
        schedule_sync(image_ids=image_ids)
        return False
    if len(image_ids) > MAX_INLINE_IMAGES:
        _background.submit(_sync_in_background, list(image_ids))
        return False
    schedule_sync(image_ids=image_ids)
    return True


# One thread: large admin selections are indexed one after another, never competing with each other for the CPU.
_background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="visualsearch-reindex")


def _sync_in_background(image_ids: list[int]) -> None:
    try:
        for start in range(0, len(image_ids), MAX_INLINE_IMAGES):
            run_sync(image_ids=image_ids[start : start + MAX_INLINE_IMAGES], product_ids=[])
    except Exception:  # the photos not reached stay pending: `reindex --missing` catches up
        logger.exception("background reindex of %d photos stopped", len(image_ids))
    finally:
        db.connections.close_all()  # this thread's connections, not the request's


def run_sync(*, image_ids: list[int], product_ids: list[int]) -> None:
    from . import services

    if product_ids:
        # Photos also in image_ids are synced in full below, reading their product after the model ran.
        services.sync_products(product_ids, skip_image_ids=image_ids)
    if image_ids:
        services.sync_images(image_ids)
