"""Health endpoints for load balancers and orchestrators.

``/healthz`` (liveness): the process answers; no dependency is touched, so a slow database never gets a healthy
web process restarted. ``/readyz`` (readiness): the database, the index and (with Celery) the broker answer;
503 otherwise, so the balancer stops sending shoppers here. Both report the photos waiting for the index.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from catalog.models import IndexStatus, ProductImage

from .backends.base import IndexUnavailable
from .models import PendingIndexDelete
from .registry import get_index

logger = logging.getLogger(__name__)
BROKER_TIMEOUT_S = 2.0


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    checks = {"database": _database(), "index": _index()}
    if settings.VISUALSEARCH["TASK_RUNNER"] == "celery":
        checks["broker"] = _broker()
    ready = all(result == "ok" for result in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    if checks["database"] == "ok":
        body["photos"] = index_backlog()
    return JsonResponse(body, status=200 if ready else 503)


def index_backlog() -> dict[str, int]:
    """Photos not in the index yet: pending (work queued or missed) and failed (see their index error); and
    deletes the index has not heard of yet (it was down)."""
    counts = dict(ProductImage.objects.exclude(index_status=IndexStatus.INDEXED)
                  .values_list("index_status").annotate(n=Count("pk")).values_list("index_status", "n"))
    return {"pending": counts.get(IndexStatus.PENDING, 0), "failed": counts.get(IndexStatus.FAILED, 0),
            "deletes_pending": PendingIndexDelete.objects.count()}


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as exc:
        return f"unavailable: {exc}"


def _index() -> str:
    try:
        problems = get_index().check()
    except (IndexUnavailable, OSError) as exc:
        problems = [str(exc)]
    return "ok" if not problems else "unavailable: " + "; ".join(problems)


def _broker() -> str:
    from project.celery import app

    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
        return "ok"
    except Exception as exc:  # noqa: BLE001 — kombu raises per transport; any failure means "not ready"
        return f"unavailable: {exc}"
