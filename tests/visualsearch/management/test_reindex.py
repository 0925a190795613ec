from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog.models import IndexStatus, ProductImage
from visualsearch.models import ImageEmbedding
from tests.conftest import indexed_ids
from visualsearch.registry import get_index

pytestmark = pytest.mark.django_db


def reindex(*args) -> str:
    out = io.StringIO()
    call_command("reindex", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def unindexed(make_product, make_image):
    """Photos saved with signals' work never run (as after a crash): no vectors, status pending."""
    product = make_product()
    return [make_image(product, seed=s) for s in range(5)]


def test_reindex_embeds_and_indexes_everything(unindexed):
    output = reindex("--batch-size", "2")
    assert "5 photos indexed, 5 embedded, 0 failed" in output
    assert indexed_ids() == {p.pk for p in unindexed}
    assert set(ProductImage.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}


def test_reindex_twice_embeds_nothing_the_second_time(unindexed):
    reindex()
    assert "5 photos indexed, 0 embedded, 0 failed" in reindex()
    assert ImageEmbedding.objects.count() == 5


def test_reindex_missing_only_touches_pending_and_failed(unindexed):
    reindex()
    ProductImage.objects.filter(pk=unindexed[0].pk).update(index_status=IndexStatus.FAILED)
    assert "1 pending photos indexed" in reindex("--missing")


def test_broken_files_are_counted_as_failures(make_image, unindexed):
    broken = make_image(data=b"garbage", name="broken.jpg")
    assert "1 failed" in reindex()
    broken.refresh_from_db()
    assert broken.index_status == IndexStatus.FAILED


def test_reindex_rebuilds_from_stored_vectors_for_a_new_process(unindexed):
    """Another process's in-memory index (simulated by a fresh registry) loads what reindex stored."""
    from visualsearch.registry import indexes
    from visualsearch.services.indexing import ensure_loaded

    reindex()
    indexes.reset()
    assert ensure_loaded(get_index()).image_ids() == {p.pk for p in unindexed}


def test_bad_options():
    with pytest.raises(CommandError):
        call_command("reindex", "--batch-size", "0")
    with pytest.raises(CommandError):
        call_command("reindex", "--extractor", "nope")


def test_a_file_that_crashes_its_decoder_fails_alone(unindexed, monkeypatch):
    from visualsearch.services import embedding

    poison = unindexed[2]
    real = embedding.load_stored_image

    def load(image):
        if image.pk == poison.pk:
            raise IndexError("decoder bug")
        return real(image)

    monkeypatch.setattr(embedding, "load_stored_image", load)
    assert "4 photos indexed, 4 embedded, 1 failed" in reindex()
    poison.refresh_from_db()
    assert poison.index_status == IndexStatus.FAILED and "decoder bug" in poison.index_error


def test_reindex_products_resends_changes_made_without_signals(unindexed, monkeypatch):
    """`QuerySet.update()` sends no signals; `reindex --products` re-sends product fields without the model."""
    from catalog.models import Product
    from visualsearch.backends.base import SearchFilters
    from visualsearch.registry import get_extractor
    from visualsearch.services.embedding import stored_vectors

    reindex()
    Product.objects.update(category="hats", is_active=False)
    monkeypatch.setattr(get_extractor(), "embed", lambda images: pytest.fail("the model ran"))
    assert "5 photos re-sent" in reindex("--products")
    index = get_index()
    index.refresh()
    vector = stored_vectors([unindexed[0].sha256], index.extractor_id)[unindexed[0].sha256]
    hits = index.search(vector, limit=1, filters=SearchFilters(active_only=False, category="hats"))
    assert hits[0].image_id == unindexed[0].pk
    assert index.search(vector, limit=1) == []


def test_a_lost_index_is_restored_from_the_database_by_reindex(catalog):
    """The backup/restore promise (README): the database is the source of truth. Drop the index entirely (on
    Elasticsearch: delete its indexes and aliases), run `reindex`, and search answers as before — no photo decoded."""
    from tests.conftest import another_view, encode, scene
    from tests.services import delete_indexes, uses_elasticsearch
    from visualsearch.registry import indexes
    from visualsearch.services.search import search_by_image

    query = encode(another_view(scene(2)))
    before = [m.product.pk for m in search_by_image(image_bytes=query, threshold=-1.0).matches]
    index = get_index()
    if uses_elasticsearch():
        delete_indexes(index.client, f"{index.prefix}__*")
    indexes.reset()
    assert get_index().count() == 0
    output = reindex()
    assert "12 photos indexed, 0 embedded, 0 failed" in output  # the inactive product's too: hidden at search
    after = [m.product.pk for m in search_by_image(image_bytes=query, threshold=-1.0).matches]
    assert after == before and after[0] == catalog[2].pk
