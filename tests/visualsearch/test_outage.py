"""A real Elasticsearch server that stops answering (SIGSTOP: a frozen JVM, the hardest case: no connection error,
just silence). Shoppers get a quick 503, staff saves still succeed and stay pending, and `reindex --missing`
catches up once the server is back (SIGCONT)."""
from __future__ import annotations

import io
import os
import signal
import time
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from elasticsearch import Elasticsearch
from rest_framework.test import APIClient

from catalog.models import IndexStatus
from tests.conftest import indexed_ids, scene_jpeg
from tests.services import delete_indexes, elasticsearch_url

pytestmark = [pytest.mark.services, pytest.mark.django_db]


@pytest.fixture
def on_elasticsearch(settings):
    """This test's index lives on the real server, whichever backend the run is configured with."""
    url = elasticsearch_url()
    settings.VISUALSEARCH_INDEXES = {"default": {
        "BACKEND": "visualsearch.backends.elasticsearch.ElasticsearchIndex",
        "OPTIONS": {"hosts": [url], "alias": f"outage-{os.getpid()}-{time.time_ns()}", "timeout": 1.0},
    }}
    yield url
    with Elasticsearch([url]) as client:
        alias = settings.VISUALSEARCH_INDEXES["default"]["OPTIONS"]["alias"]
        delete_indexes(client, f"{alias}__*")


@contextmanager
def frozen(url: str):
    with Elasticsearch([url]) as client:
        pid = next(iter(client.nodes.info(node_id="_local", metric="process")["nodes"].values()))["process"]["id"]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_frozen_server(on_elasticsearch, make_product, make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        make_image(make_product(), seed=1)
    with frozen(on_elasticsearch):
        started = time.monotonic()
        file = io.BytesIO(scene_jpeg(1))
        file.name = "q.jpg"
        response = APIClient().post("/api/search/", {"image": file}, format="multipart")
        assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
        assert time.monotonic() - started < 10, "the API must not hang on a silent server"

        with django_capture_on_commit_callbacks(execute=True):
            photo = make_image(make_product(), seed=2)  # the staff save itself succeeds
        photo.refresh_from_db()
        assert photo.index_status == IndexStatus.PENDING and "unavailable" in photo.index_error

    _wait_for_health(on_elasticsearch)
    call_command("reindex", "--missing", stdout=io.StringIO(), stderr=io.StringIO())
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.INDEXED
    assert photo.pk in indexed_ids()


def _wait_for_health(url: str) -> None:
    with Elasticsearch([url], request_timeout=30) as client:
        client.cluster.health(wait_for_status="yellow", timeout="30s")


def test_a_delete_made_while_the_server_is_down_reaches_the_index_when_it_is_back(
    on_elasticsearch, make_product, make_image, django_capture_on_commit_callbacks,
):
    """The photo's row is gone, so `pending` cannot record it: PendingIndexDelete does, and the next write (or
    `reindex --missing`) sends it. Without that record the deleted photo would stay searchable until a rebuild."""
    from visualsearch.models import PendingIndexDelete

    with django_capture_on_commit_callbacks(execute=True):
        doomed = make_image(make_product(), seed=3)
        kept = make_image(make_product(), seed=4)
    with frozen(on_elasticsearch), django_capture_on_commit_callbacks(execute=True):
        doomed_id = doomed.pk
        doomed.delete()  # the staff delete succeeds; the index cannot hear of it
    assert list(PendingIndexDelete.objects.values_list("image_id", flat=True)) == [doomed_id]
    _wait_for_health(on_elasticsearch)
    assert doomed_id in indexed_ids()  # still there: nothing has written since
    with django_capture_on_commit_callbacks(execute=True):
        make_image(make_product(), seed=5)  # any later write takes the recorded delete along
    assert doomed_id not in indexed_ids() and kept.pk in indexed_ids()
    assert not PendingIndexDelete.objects.exists()
