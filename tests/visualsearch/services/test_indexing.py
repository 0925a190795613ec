"""Index synchronisation: races with product edits, bounded batches, paged reads, generation bumps."""
from __future__ import annotations

import re

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from catalog.models import IndexStatus, Product, ProductImage
from visualsearch import tasks
from visualsearch.backends.base import SearchFilters
from visualsearch.models import IndexGeneration
from visualsearch.registry import get_extractor, get_index
from visualsearch.services import embedding, indexing
from visualsearch.services.embedding import stored_vectors

pytestmark = pytest.mark.django_db


def found_in(category: str, photo: ProductImage, *, active_only: bool = False) -> bool:
    """Whether the index holds the photo under this category (searched with its own stored vector)."""
    index = get_index()
    index.refresh()
    vector = stored_vectors([photo.sha256], get_extractor().id)[photo.sha256]
    hits = index.search(vector, limit=5, filters=SearchFilters(active_only=active_only, category=category))
    return photo.pk in {hit.image_id for hit in hits}


def edit_product(product: Product, **fields) -> None:
    """A staff edit committed at this very moment, and the sync its save queues, run as another worker would."""
    Product.objects.filter(pk=product.pk).update(**fields)
    tasks.run_sync(image_ids=[], product_ids=[product.pk])


@pytest.fixture
def saved_photo(make_product, make_image, django_capture_on_commit_callbacks):
    """A photo just saved, its indexing not run yet (status pending)."""
    with django_capture_on_commit_callbacks(execute=False):
        return make_image(make_product(category="bags"), seed=1)


def test_a_product_change_committed_while_its_photo_is_embedded_reaches_the_index(saved_photo, monkeypatch):
    extractor = get_extractor()
    real_embed = extractor.embed

    def embed_while_staff_edits(images):
        vectors = real_embed(images)
        edit_product(saved_photo.product, category="shoes")
        return vectors

    monkeypatch.setattr(extractor, "embed", embed_while_staff_edits)
    indexing.sync_images([saved_photo.pk])
    assert found_in("shoes", saved_photo) and not found_in("bags", saved_photo)


def test_a_stale_write_that_arrives_after_a_newer_one_is_ignored(saved_photo, monkeypatch):
    """The edit lands after this sync read the product, and its own sync writes first: the older write loses."""
    index = get_index()
    real_upsert = type(index).upsert
    edited = []

    def upsert_after_a_concurrent_edit(self, entries, *, version=None):
        if not edited:
            edited.append(True)
            edit_product(saved_photo.product, is_active=False)
        return real_upsert(self, entries, version=version)

    monkeypatch.setattr(type(index), "upsert", upsert_after_a_concurrent_edit)
    indexing.sync_images([saved_photo.pk])
    assert found_in("bags", saved_photo) and not found_in("bags", saved_photo, active_only=True)


def test_a_product_change_resends_pending_photos_that_have_vectors(saved_photo):
    """A photo left pending (index outage) but embedded still gets its product's new fields."""
    indexing.sync_images([saved_photo.pk])
    ProductImage.objects.filter(pk=saved_photo.pk).update(index_status=IndexStatus.PENDING)
    Product.objects.filter(pk=saved_photo.product_id).update(category="shoes")
    indexing.sync_products([saved_photo.product_id])
    saved_photo.refresh_from_db()
    assert found_in("shoes", saved_photo) and saved_photo.index_status == IndexStatus.INDEXED


def test_a_product_sync_runs_no_model(saved_photo, monkeypatch):
    indexing.sync_images([saved_photo.pk])
    Product.objects.filter(pk=saved_photo.product_id).update(category="shoes")
    monkeypatch.setattr(get_extractor(), "embed", lambda images: pytest.fail("the model ran"))
    indexing.sync_products([saved_photo.product_id])
    assert found_in("shoes", saved_photo)


def test_a_big_transaction_is_embedded_in_batches(
    monkeypatch, make_product, make_image, django_capture_on_commit_callbacks
):
    extractor = get_extractor()
    monkeypatch.setattr(extractor, "batch_size", 2)
    sizes, real_embed = [], extractor.embed
    monkeypatch.setattr(extractor, "embed", lambda images: sizes.append(len(images)) or real_embed(images))
    product = make_product()
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            photos = [make_image(product, seed=s) for s in range(5)]
    assert sum(sizes) == 5 and max(sizes) <= 2
    statuses = set(ProductImage.objects.filter(pk__in=[p.pk for p in photos]).values_list("index_status", flat=True))
    assert statuses == {IndexStatus.INDEXED}


def test_decoding_is_bounded_by_the_batch_size(monkeypatch, make_product, make_image):
    """Images are decoded per batch, not all before the model runs."""
    extractor = get_extractor()
    monkeypatch.setattr(extractor, "batch_size", 2)
    decoded, real_load = [], embedding.load_stored_image
    monkeypatch.setattr(embedding, "load_stored_image", lambda image: decoded.append(image.pk) or real_load(image))
    seen_at_embed, real_embed = [], extractor.embed
    monkeypatch.setattr(extractor, "embed", lambda images: seen_at_embed.append(len(decoded)) or real_embed(images))
    product = make_product()
    photos = [make_image(product, seed=s) for s in range(5)]  # the test's transaction never commits: no sync yet
    decoded.clear()
    indexing.sync_images([p.pk for p in photos])
    assert seen_at_embed == [2, 4, 5]


def test_a_sync_that_writes_nothing_bumps_no_generation(make_product):
    if not get_index().in_process:
        pytest.skip("only in-process indexes use the generation counter")
    before = list(IndexGeneration.objects.values_list("generation", flat=True))
    indexing.sync_products([make_product().pk])
    assert list(IndexGeneration.objects.values_list("generation", flat=True)) == before


@pytest.fixture
def embedded_photos(make_product, make_image):
    product = make_product()
    photos = [make_image(product, seed=s) for s in range(5)]
    indexing.sync_images([p.pk for p in photos])
    return photos


def paged_selects(queries) -> list[str]:
    """Top-level SELECTs that end in a LIMIT: one per page."""
    return [q["sql"] for q in queries if re.match(r"(?is)\s*SELECT\b.*\bLIMIT\s+\d+\s*$", q["sql"])]


def test_stored_vectors_are_read_in_pages_by_primary_key(embedded_photos):
    """MySQL's `.iterator(chunk_size=…)` does not stream: each page must be its own query."""
    with CaptureQueriesContext(connection) as queries:
        entries = list(indexing.iter_entries(get_extractor().id, chunk_size=2))
    assert sorted(e.image_id for e in entries) == sorted(p.pk for p in embedded_photos)
    assert len(paged_selects(queries.captured_queries)) >= 3


def test_embedding_what_is_missing_reads_in_pages_by_primary_key(embedded_photos, make_image):
    from visualsearch.models import ImageEmbedding

    ImageEmbedding.objects.all().delete()
    with CaptureQueriesContext(connection) as queries:
        embedded, failed = indexing.embed_missing(extractor=get_extractor(), batch_size=2)
    assert (embedded, failed) == (5, 0)
    assert len([sql for sql in paged_selects(queries.captured_queries) if "catalog_productimage" in sql]) >= 3
