"""The Celery runner calls the same services as the inline one (run eagerly here; a real worker: test_celery_worker.py)."""
from __future__ import annotations

import io

import pytest

from catalog.models import IndexStatus
from project.celery import app
from tests.conftest import indexed_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_celery(settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "TASK_RUNNER": "celery"}
    # With namespace="CELERY" the keys are the Django setting names.
    app.conf.update(CELERY_TASK_ALWAYS_EAGER=True)
    yield
    app.conf.update(CELERY_TASK_ALWAYS_EAGER=False)


def test_saves_are_indexed_through_celery_tasks(eager_celery, make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=1)
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.INDEXED and photo.pk in indexed_ids()


def test_the_task_reconciles_deleted_photos(eager_celery, make_image, django_capture_on_commit_callbacks):
    from visualsearch.celery_tasks import sync_index_task

    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=2)
    photo_id = photo.pk
    photo.delete()  # outside a transaction block: handled at once
    sync_index_task.apply(kwargs={"image_ids": [photo_id], "product_ids": []})
    assert photo_id not in indexed_ids()


def test_a_large_batch_is_split_into_bounded_tasks(eager_celery, monkeypatch):
    from visualsearch import celery_tasks, tasks

    monkeypatch.setattr(tasks, "MAX_TASK_IMAGES", 2)
    calls = []
    monkeypatch.setattr(celery_tasks, "run_sync", lambda **kwargs: calls.append(kwargs))
    tasks.schedule_sync(image_ids=range(1, 6), product_ids=[7])
    assert sorted(i for call in calls for i in call["image_ids"]) == [1, 2, 3, 4, 5]
    assert max(len(call["image_ids"]) for call in calls) <= 2
    assert [p for call in calls for p in call["product_ids"]] == [7]


def use_broker(url: str) -> None:
    """Point the Celery app at another broker (its connection pools are cached on first use)."""
    app.conf.update(CELERY_BROKER_URL=url, CELERY_TASK_ALWAYS_EAGER=False)  # namespace "CELERY": Django names
    app._pool = None
    app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
def test_a_save_never_waits_on_a_broker_that_is_down(settings, make_image, caplog):
    """Saves succeed at once, the photo stays pending, and `reindex --missing` catches it up."""
    import time

    from django.core.management import call_command

    from catalog.models import IndexStatus

    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "TASK_RUNNER": "celery"}
    try:
        use_broker("redis://127.0.0.1:1/0")  # nothing listens there
        started = time.monotonic()
        photo = make_image(seed=31)  # autocommit: handed to the broker right away, which fails
        assert time.monotonic() - started < 5
    finally:
        use_broker("memory://")
    assert "broker unavailable" in caplog.text  # it really tried the dead broker
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.PENDING
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "TASK_RUNNER": "inline"}
    call_command("reindex", "--missing", stdout=io.StringIO(), stderr=io.StringIO())
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.INDEXED
