"""Where index work runs: inline after commit (embedded default) or on Celery workers (production)."""
from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings

logger = logging.getLogger(__name__)


def schedule_sync(*, image_ids: Iterable[int] = (), product_ids: Iterable[int] = ()) -> None:
    image_ids, product_ids = sorted(set(image_ids)), sorted(set(product_ids))
    if not image_ids and not product_ids:
        return
    if settings.VISUALSEARCH["TASK_RUNNER"] == "celery":
        from .celery_tasks import sync_index_task

        sync_index_task.delay(image_ids=image_ids, product_ids=product_ids)
    else:
        run_sync(image_ids=image_ids, product_ids=product_ids)


def run_sync(*, image_ids: list[int], product_ids: list[int]) -> None:
    from . import services

    if product_ids:
        services.sync_products(product_ids)
    if image_ids:
        services.sync_images(image_ids)
