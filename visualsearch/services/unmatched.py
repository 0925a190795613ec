"""Record shopper searches that found nothing close, for the merchandisers' admin report."""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError
from django.utils import timezone

from ..models import UnmatchedSearch

logger = logging.getLogger(__name__)


def record(*, source: str, photo_key: str, filters: dict, best_score: float | None, nearest_product_id: int | None,
           photo_jpeg: bytes | None = None) -> None:
    """Keep one row per (photo, filters); never raise (a report must not break a search)."""
    options = settings.VISUALSEARCH
    clean = {key: str(value) for key, value in filters.items() if value not in (None, "", False)}
    key = hashlib.sha256(json.dumps([photo_key, sorted(clean.items())]).encode()).hexdigest()
    try:
        if UnmatchedSearch.objects.filter(query_key=key).exists():
            return
        row = UnmatchedSearch(source=source, query_key=key, category=clean.pop("category", ""), filters=clean,
                              best_score=best_score, nearest_product_id=nearest_product_id)
        if photo_jpeg and options.get("KEEP_UNMATCHED_PHOTOS"):
            row.photo.save(f"{key[:16]}.jpg", ContentFile(photo_jpeg), save=False)
        row.save()
        cutoff = timezone.now() - timedelta(days=options.get("UNMATCHED_SEARCH_DAYS", 90))
        UnmatchedSearch.objects.filter(created_at__lt=cutoff).delete()
    except (DatabaseError, OSError) as exc:  # e.g. a duplicate racing in from a reload: nothing lost that matters
        logger.info("unmatched search not recorded: %s", exc)
