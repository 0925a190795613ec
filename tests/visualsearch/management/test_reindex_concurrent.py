"""Zero-downtime reindex on the production configuration: photos added and deleted *while* `reindex` rebuilds
the Elasticsearch index are neither lost nor resurrected; afterwards the index equals the database."""
from __future__ import annotations

import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from catalog.models import ProductImage
from tests.conftest import indexed_ids
from tests.services import require, uses_elasticsearch, uses_mysql

pytestmark = [pytest.mark.services, pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _production_only(settings):
    require("MariaDB + Elasticsearch", uses_mysql() and uses_elasticsearch(), "the production configuration")
    config = settings.VISUALSEARCH_INDEXES["default"]
    # Small bulk chunks stretch the rebuild so the writer really runs during it.
    settings.VISUALSEARCH_INDEXES = {"default": {**config, "OPTIONS": {**config["OPTIONS"], "bulk_chunk": 10}}}


def test_index_equals_database_after_a_reindex_under_concurrent_writes(make_product, make_image):
    product = make_product()
    photos = [make_image(product, seed=s) for s in range(60)]  # autocommit: each indexed at once
    rebuilding = threading.Event()
    done = threading.Event()
    writes = {"added": 0, "deleted": 0}

    def writer():
        try:
            rebuilding.wait(5)
            seed = 1000
            # Bounded by the original photos: a slow rebuild must not be chased by writes forever.
            while photos and (not done.is_set() or writes["added"] < 10):
                make_image(product, seed=seed)
                seed += 1
                writes["added"] += 1
                photos.pop(0).delete()
                writes["deleted"] += 1
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    rebuilding.set()
    call_command("reindex", stdout=io.StringIO(), stderr=io.StringIO())
    during_rebuild = writes["added"]
    done.set()
    thread.join(60)
    assert during_rebuild >= 3, "the writer must overlap the rebuild for this test to mean anything"
    assert indexed_ids() == set(ProductImage.objects.values_list("pk", flat=True))
