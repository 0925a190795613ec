from __future__ import annotations

import pytest

from catalog.models import IndexStatus, ProductImage

pytestmark = pytest.mark.django_db


def test_liveness_touches_nothing(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readiness_reports_checks_and_the_index_backlog(client, catalog):
    photo = catalog[0].images.first()
    ProductImage.objects.filter(pk=photo.pk).update(index_status=IndexStatus.FAILED, index_error="boom")
    body = client.get("/readyz").json()
    assert body["status"] == "ok" and body["checks"] == {"database": "ok", "index": "ok"}
    assert body["photos"] == {"pending": 0, "failed": 1, "deletes_pending": 0}


def test_readiness_fails_when_the_index_is_unreachable(client, catalog, monkeypatch):
    from visualsearch.registry import get_index

    monkeypatch.setattr(type(get_index()), "check", lambda self: ["Elasticsearch is not reachable"])
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["index"].startswith("unavailable")


def test_readiness_checks_the_broker_with_celery(client, settings):
    """The broker's own error comes back (connection refused), not a missing transport library."""
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "TASK_RUNNER": "celery"}
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there
    from project.celery import app

    app.conf.broker_url = settings.CELERY_BROKER_URL
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url = "memory://"
    assert response.status_code == 503 and "refused" in response.json()["checks"]["broker"]


def test_the_admin_index_shows_photos_not_indexed_yet(admin_client, catalog):
    photo = catalog[0].images.first()
    ProductImage.objects.filter(pk=photo.pk).update(index_status=IndexStatus.PENDING)
    page = admin_client.get("/admin/").content.decode()
    assert "1 pending, 0 failed" in page and "?indexed=no" in page
