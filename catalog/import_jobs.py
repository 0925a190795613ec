"""Imports started from the admin run on one background thread of the web process, reporting as they go.

The import itself is idempotent and commits batch by batch, so a job cut short by a restart is finished by
starting it again (or by `manage.py import_catalog` on the same file): nothing is duplicated.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from django import db
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from .importing import import_rows, read_file, source_from_settings
from .models import CatalogImport

logger = logging.getLogger(__name__)
MAX_REPORTED_FAILURES = 1000
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-import-job")


def start(job: CatalogImport):
    """Queue the job; returns the future (tests wait on it)."""
    return _worker.submit(run, job.pk)


def run(job_id: int) -> None:
    job = CatalogImport.objects.get(pk=job_id)
    try:
        path = Path(job.file.path)
        job.rows_total = sum(1 for _ in read_file(path))
        job.status = CatalogImport.Status.RUNNING
        job.save(update_fields=["rows_total", "status"])
        # No local paths from the admin: a file uploaded through the web must not read the server's disk.
        source = source_from_settings(base_dir=None)
        report = import_rows(read_file(path), source, workers=settings.CATALOG_IMPORT["WORKERS"],
                             progress=lambda n: CatalogImport.objects.filter(pk=job_id).update(
                                 rows_done=F("rows_done") + n))
        job.summary = {k: v for k, v in asdict(report).items() if k != "failures"}
        job.failures = [asdict(f) for f in report.failures[:MAX_REPORTED_FAILURES]]
        job.status = CatalogImport.Status.DONE
    except Exception as exc:  # noqa: BLE001 — the job's page must say why it stopped
        logger.exception("catalog import %s stopped", job_id)
        job.status, job.error = CatalogImport.Status.FAILED, f"{type(exc).__name__}: {exc}"
    finally:
        job.finished_at = timezone.now()
        job.save(update_fields=["summary", "failures", "status", "error", "finished_at"])
        db.connections.close_all()
