"""The Celery runner calls the same services as the inline one (run eagerly here: no broker in tests)."""
from __future__ import annotations

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
