"""A photo the real Elasticsearch refuses (here: a stored vector that is not unit length, as a model bug would
leave) fails alone, with the server's reason; the photos written with it are indexed."""
from __future__ import annotations

import numpy as np
import pytest

from catalog.models import IndexStatus
from tests.conftest import indexed_ids
from tests.visualsearch.test_outage import on_elasticsearch  # noqa: F401  (the real server, whatever the backend)
from visualsearch.models import ImageEmbedding, vector_to_bytes
from visualsearch.registry import get_extractor
from visualsearch.services.indexing import sync_images

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def test_a_refused_photo_fails_alone_with_the_reason(on_elasticsearch, make_product, make_image,  # noqa: F811
                                                     django_capture_on_commit_callbacks):
    product = make_product()
    with django_capture_on_commit_callbacks(execute=False):  # saved, not yet synced
        good, bad = make_image(product, seed=11), make_image(product, seed=12)
    dim = get_extractor().dim
    ImageEmbedding.objects.create(sha256=bad.sha256, extractor_id=get_extractor().id, dim=dim,
                                  vector=vector_to_bytes(np.zeros(dim, dtype=np.float32)))
    sync_images([good.pk, bad.pk])
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.index_status == IndexStatus.INDEXED and good.pk in indexed_ids()
    assert bad.index_status == IndexStatus.FAILED and "refused" in bad.index_error and bad.pk not in indexed_ids()
