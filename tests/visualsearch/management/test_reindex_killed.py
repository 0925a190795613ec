"""`reindex` SIGKILLed while it embeds, while it bulk-loads the new index and after loading while it verifies the new
index before the alias swap, then run again, on the production
configuration (a separate process on the test's MariaDB database and Elasticsearch alias). At every moment the
read alias points at a complete index (the one live before); the rerun completes; afterwards only the new index
and the one kept for rollback exist (the half-built ones are dropped)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from catalog.models import ProductImage
from tests.conftest import scene_jpeg
from tests.services import database_url, require, uses_elasticsearch, uses_mysql
from visualsearch.models import ImageEmbedding
from visualsearch.registry import get_index

pytestmark = [pytest.mark.services, pytest.mark.mysql, pytest.mark.django_db(transaction=True)]
BASE_DIR = Path(__file__).resolve().parents[3]
LOCK_TTL_S = 2


def reindex(settings, *, wait: bool):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_ENV_FILE": "", "DJANGO_DEBUG": "0",
           "DJANGO_SECRET_KEY": "reindex-test-secret", "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "DATABASE_URL": database_url(),
           "ELASTICSEARCH_INDEX_ALIAS": settings.VISUALSEARCH_INDEXES["default"]["OPTIONS"]["alias"],
           "ELASTICSEARCH_REBUILD_LOCK_TTL": str(LOCK_TTL_S), "ELASTICSEARCH_BULK_CHUNK": "4",
           "VISUALSEARCH_RECOGNITION": "off"}
    command = [sys.executable, "manage.py", "reindex", "--batch-size", "8", "-v", "0"]
    if wait:
        return subprocess.run(command, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_for(process, condition, what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        assert process.poll() is None, f"reindex finished before it could be killed {what}"
        assert time.monotonic() < deadline, f"never reached: {what}"
        time.sleep(0.01)


def kill_when(process, condition, what: str) -> None:
    wait_for(process, condition, what)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def aliases(index) -> tuple[list[str], list[str]]:
    return index.aliases._indexes_behind(index.read_alias), index.aliases._indexes_behind(index.aliases.write_alias)


def test_a_killed_reindex_never_leaves_the_alias_empty_or_half_built(settings, make_product, make_image, media_root):
    require("MariaDB + Elasticsearch", uses_mysql() and uses_elasticsearch(), "the production configuration")
    product = make_product()
    live_photos = [make_image(product, seed=s) for s in range(12)]  # indexed by their saves: the live index
    index = get_index()
    index.refresh()
    [live], _ = aliases(index)
    assert index.count() == 12
    more = []
    for seed in range(100, 260):
        photo = ProductImage(product=product, position=seed)
        photo.image.save(f"m{seed}.jpg", ContentFile(scene_jpeg(seed)), save=False)
        more.append(photo)
    ProductImage.objects.bulk_create(more)  # no signals: no vectors yet
    total = 12 + len(more)

    def unchanged_live_index() -> None:
        read, _ = aliases(index)
        assert read == [live] and index.client.count(index=live)["count"] == 12
        assert index.search(_vector_of(live_photos[0]), limit=1)[0].product_id == product.pk

    known = [live]

    def building() -> str | None:  # the index this run builds: the newest behind the write alias not seen before
        names = [name for name in aliases(index)[1] if name not in known]
        return names[-1] if names else None

    def loading() -> bool:  # documents written to the new index so far (counted before any refresh)
        if not (name := building()):
            return False
        stats = index.client.indices.stats(index=name, metric="indexing")["indices"]
        written = next(iter(stats.values()), {}).get("primaries", {}).get("indexing", {}).get("index_total", 0)
        return 0 < written < total

    # 1. killed while embedding
    run = reindex(settings, wait=False)
    kill_when(run, lambda: 12 < ImageEmbedding.objects.count() < total, "while embedding")
    unchanged_live_index()
    # 2. killed while bulk-loading the new index (4 documents per request)
    time.sleep(LOCK_TTL_S + 0.5)  # the killed run's lock expires
    run = reindex(settings, wait=False)
    kill_when(run, loading, "while bulk-loading")
    unchanged_live_index()
    half_built = [name for name in aliases(index)[1] if name != live]
    assert half_built
    known += half_built
    # 3. killed once loaded, while it verifies the new index before the alias swap. A photo added meanwhile
    # (bulk-created: no signal, so no live write reaches the new index) keeps the new index one short of the
    # database, which holds the run in its verification retries (seconds) for the kill to land there.
    time.sleep(LOCK_TTL_S + 0.5)
    run = reindex(settings, wait=False)
    wait_for(run, loading, "while bulk-loading")  # the entries to load have been read by now
    twin = ProductImage(product=product, position=999)
    twin.image.save("twin.jpg", ContentFile(scene_jpeg(100)), save=False)  # same content: shares a stored vector
    ProductImage.objects.bulk_create([twin])

    def verifying() -> bool:  # everything loaded and visible (refreshed), the read alias not yet moved
        return bool(name := building()) and index.client.count(index=name)["count"] == total

    kill_when(run, verifying, "while verifying before the alias swap")
    unchanged_live_index()
    half_built = [name for name in aliases(index)[1] if name != live]
    assert len(half_built) == 2
    total += 1
    # 4. run again to the end
    time.sleep(LOCK_TTL_S + 0.5)
    done = reindex(settings, wait=True)
    assert done.returncode == 0, done.stderr[-2000:]
    read, write = aliases(index)
    assert len(read) == 1 and read[0] not in (live, *half_built)
    assert index.client.count(index=read[0])["count"] == total
    assert sorted(write) == sorted([live, read[0]])  # the rollback index is kept; the half-built ones are gone
    existing = set(index.client.indices.get(index=f"{index.prefix}__*").body)
    assert not existing & set(half_built)


def _vector_of(photo):
    from visualsearch.models import vector_from_bytes
    from visualsearch.registry import get_extractor

    return vector_from_bytes(ImageEmbedding.objects.get(sha256=photo.sha256, extractor_id=get_extractor().id).vector)
