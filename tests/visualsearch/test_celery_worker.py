"""A real Celery worker (a separate process) on a real broker (Redis, started by scripts/services.sh), indexing
into the production configuration (MariaDB + Elasticsearch).

Marked `mysql`: the worker must read what the test wrote, which needs a database server (CI's production run).
Each test gets its own Redis database number, flushed first, so runs never see each other's messages.
"""
from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command

from catalog.models import IndexStatus, Product, ProductImage
from tests.conftest import encode, scene, scene_jpeg
from tests.services import database_url, require, uses_elasticsearch, uses_mysql
from visualsearch import tasks
from visualsearch.models import ImageEmbedding
from visualsearch.registry import get_index

from .test_tasks import use_broker

pytestmark = [pytest.mark.services, pytest.mark.mysql, pytest.mark.django_db(transaction=True)]
BASE_DIR = Path(__file__).resolve().parents[2]


def broker_url() -> str:
    url = os.environ.get("TEST_CELERY_BROKER_URL", "")  # CELERY_BROKER_URL, moved aside by tests/settings.py
    require("Redis (Celery broker)", url.startswith("redis://"), "set CELERY_BROKER_URL via `bash scripts/services.sh start`")
    require("MariaDB + Elasticsearch", uses_mysql() and uses_elasticsearch(), "the production configuration")
    return url.rsplit("/", 1)[0] + f"/{random.randint(1, 15)}"  # a database of its own, flushed below


class Worker:
    """`celery -A project worker` in its own process group, on the test's database, index and broker."""

    def __init__(self, broker: str, settings, visibility_timeout: int = 600) -> None:
        index_options = settings.VISUALSEARCH_INDEXES["default"]["OPTIONS"]
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_ENV_FILE": "",
               "DJANGO_SECRET_KEY": "worker-test-secret", "DJANGO_DEBUG": "0",
               "DATABASE_URL": database_url(),
               "ELASTICSEARCH_INDEX_ALIAS": index_options["alias"], "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
               "VISUALSEARCH_TASK_RUNNER": "celery", "CELERY_BROKER_URL": broker,
               "CELERY_VISIBILITY_TIMEOUT": str(visibility_timeout), "VISUALSEARCH_WARM_UP": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "project", "worker", "-P", "prefork", "-c", "1", "-l", "info",
             "--without-gossip", "--without-mingle", "-n", f"test-{uuid.uuid4().hex[:8]}@%h"],
            cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(90):
            self.kill()
            pytest.fail("the worker did not start:\n" + "".join(self.lines[-40:]))

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if " ready." in line:
                self.ready.set()

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: no warm shutdown, no acknowledgement."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(30)


@pytest.fixture
def broker(settings):
    url = broker_url()
    import redis

    redis.Redis.from_url(url).flushdb()
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "TASK_RUNNER": "celery"}
    use_broker(url)
    yield url
    use_broker("memory://")


@pytest.fixture
def workers(broker, settings, media_root):
    started: list[Worker] = []

    def start(**options) -> Worker:
        started.append(Worker(broker, settings, **options))
        return started[-1]

    yield start
    for worker in started:
        worker.kill()


def wait_until(condition, timeout: float, what: str, worker: Worker | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            log = "".join(worker.lines[-40:]) if worker else ""
            pytest.fail(f"timed out waiting for {what}\n{log}")
        time.sleep(0.05)


def statuses(ids) -> list[str]:
    return list(ProductImage.objects.filter(pk__in=ids).values_list("index_status", flat=True))


def all_indexed(ids) -> bool:
    return set(statuses(ids)) == {IndexStatus.INDEXED}


def test_saves_and_imports_are_indexed_by_the_worker(workers, make_image, tmp_path):
    worker = workers()
    photos = [make_image(seed=s) for s in range(3)]  # admin-style saves: handed to the broker on commit
    (tmp_path / "a.jpg").write_bytes(encode(scene(40)))
    (tmp_path / "shop.csv").write_text("relation_id,title,image\nimp-1,Imported,a.jpg\n")
    call_command("import_catalog", str(tmp_path / "shop.csv"), stdout=io.StringIO(), verbosity=0)
    ids = [p.pk for p in photos] + list(ProductImage.objects.filter(product__relation_id="imp-1").values_list("pk", flat=True))
    wait_until(lambda: all_indexed(ids), 120, "the worker to index every photo", worker)
    index = get_index()
    index.refresh()
    assert set(ids) <= index.image_ids()


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(workers, make_product):
    """SIGKILL while a 200-photo task is half done: the message was not acknowledged, so after the visibility
    timeout a new worker gets it again and redoes it; what was done is found done (stored vectors, upserts)."""
    product = make_product()
    photos = []
    for seed in range(200):
        photo = ProductImage(product=product, position=seed)
        photo.image.save(f"p{seed}.jpg", ContentFile(scene_jpeg(1000 + seed)), save=False)
        photos.append(photo)
    ids = [p.pk for p in ProductImage.objects.bulk_create(photos)]  # no signals: nothing queued yet
    worker = workers(visibility_timeout=5)
    tasks.schedule_sync(image_ids=ids)  # one task (≤ MAX_TASK_IMAGES), done in chunks of the model's batch
    wait_until(lambda: IndexStatus.INDEXED in statuses(ids), 120, "the first chunk")
    worker.kill()
    done_at_kill = statuses(ids).count(IndexStatus.INDEXED)
    assert 0 < done_at_kill < len(ids), "the task finished before the kill: nothing was tested"
    workers(visibility_timeout=5)
    wait_until(lambda: all_indexed(ids), 180, "the redelivered task to finish")
    index = get_index()
    index.refresh()
    assert index.count() == len(ids) and index.image_ids() == set(ids)  # each photo once
    assert ImageEmbedding.objects.count() == len(ids)  # each content embedded once
