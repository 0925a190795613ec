"""Photos → stored vectors, keyed by the content hash: the hash must always be the file's, never empty or stale."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from catalog.models import IndexStatus, ProductImage
from tests.conftest import indexed_ids, scene_jpeg
from visualsearch.models import ImageEmbedding, vector_from_bytes
from visualsearch.registry import get_extractor, get_index
from visualsearch.services import search_by_image, sync_images
from visualsearch.services.embedding import embed_images, embed_pipelined

pytestmark = pytest.mark.django_db


def best_match(image_bytes: bytes):
    get_index().refresh()
    return search_by_image(image_bytes=image_bytes, threshold=-1).matches[0]


def assert_found_by(photo: ProductImage, image_bytes: bytes) -> None:
    match = best_match(image_bytes)
    assert match.image.pk == photo.pk and match.score > 0.99


def store(name: str, data: bytes) -> str:
    return default_storage.save(name, ContentFile(data))


# --- item 1: replacing a photo's file ------------------------------------------------------------------------------


@pytest.fixture
def indexed_photo(make_product, make_image, django_capture_on_commit_callbacks):
    """An indexed photo of seed 1, next to another product's photo so that a search always has a rival."""
    with django_capture_on_commit_callbacks(execute=True):
        make_image(make_product(), seed=50)
        photo = make_image(seed=1)
    assert_found_by(photo, scene_jpeg(1))
    return ProductImage.objects.get(pk=photo.pk)


def test_a_file_replaced_with_django_file_save_is_indexed_by_its_new_picture(
    indexed_photo, tmp_path, django_capture_on_commit_callbacks
):
    new = scene_jpeg(2)
    (tmp_path / "new.jpg").write_bytes(new)
    with django_capture_on_commit_callbacks(execute=True), open(tmp_path / "new.jpg", "rb") as handle:
        indexed_photo.image.save("new.jpg", File(handle))
    indexed_photo.refresh_from_db()
    assert indexed_photo.sha256 == hashlib.sha256(new).hexdigest()
    assert indexed_photo.index_status == IndexStatus.INDEXED
    assert_found_by(indexed_photo, new)
    assert best_match(scene_jpeg(1)).score < 0.99  # the old picture is gone from the index


def test_a_stored_file_name_assigned_to_a_photo_is_indexed_by_its_picture(
    indexed_photo, django_capture_on_commit_callbacks
):
    new = scene_jpeg(3)
    name = store("products/elsewhere/other.jpg", new)
    with django_capture_on_commit_callbacks(execute=True):
        indexed_photo.image = name
        indexed_photo.save()
    indexed_photo.refresh_from_db()
    assert indexed_photo.sha256 == hashlib.sha256(new).hexdigest()
    assert_found_by(indexed_photo, new)


# --- item 2: photos saved without Model.save() ----------------------------------------------------------------------


def test_bulk_created_photos_get_their_own_vectors(make_product):
    product = make_product()
    data = [scene_jpeg(20), scene_jpeg(21)]
    names = [store(f"products/bulk/{n}.jpg", d) for n, d in enumerate(data)]
    ProductImage.objects.bulk_create([ProductImage(product=product, image=name) for name in names])
    call_command("reindex", verbosity=0)
    photos = list(ProductImage.objects.filter(product=product).order_by("pk"))
    vectors = [vector_from_bytes(v) for v in ImageEmbedding.objects.values_list("vector", flat=True)]
    assert len(vectors) == 2 and not np.allclose(vectors[0], vectors[1])
    assert not ImageEmbedding.objects.filter(sha256="").exists()
    for photo, picture in zip(photos, data):
        assert_found_by(photo, picture)


def test_reindex_hashes_photos_left_without_a_content_hash(make_product, make_image):
    """As the migration leaves photos that were saved without a hash: a unique placeholder, pending."""
    product = make_product()
    photos = [make_image(product, seed=s) for s in (30, 31)]
    for photo in photos:
        ProductImage.objects.filter(pk=photo.pk).update(sha256=f"unhashed:{photo.pk}")
    call_command("reindex", verbosity=0)
    assert ImageEmbedding.objects.count() == 2
    for photo, seed in zip(photos, (30, 31)):
        stored = ProductImage.objects.get(pk=photo.pk)
        assert stored.sha256 == photo.sha256 and stored.index_status == IndexStatus.INDEXED
        assert_found_by(photo, scene_jpeg(seed))


def test_embedding_never_groups_or_stores_photos_by_an_empty_hash(make_product, make_image):
    photos = [make_image(make_product(), seed=s) for s in (40, 41)]
    expected = [p.sha256 for p in photos]
    for photo in photos:
        photo.sha256 = ""  # as an object built in memory, or a row from before the constraint
    outcome = embed_images(photos, get_extractor())
    assert [p.sha256 for p in photos] == expected
    assert set(outcome.vectors) == set(expected) and outcome.computed == 2
    assert set(ImageEmbedding.objects.values_list("sha256", flat=True)) == set(expected)


def test_a_photo_whose_file_is_gone_and_has_no_hash_fails_alone(make_product, make_image):
    kept, lost = make_image(make_product(), seed=42), make_image(make_product(), seed=43)
    ProductImage.objects.filter(pk=lost.pk).update(sha256=f"unhashed:{lost.pk}")
    lost.refresh_from_db()
    lost.image.storage.delete(lost.image.name)
    outcome = embed_images([kept, lost], get_extractor())
    assert set(outcome.vectors) == {kept.sha256}
    assert set(outcome.errors) == {lost.pk} and "cannot read image" in outcome.errors[lost.pk]
    assert not ImageEmbedding.objects.exclude(sha256=kept.sha256).exists()


# --- low: a shared file whose chosen copy is unreadable -----------------------------------------------------------


@pytest.mark.parametrize("broken", [0, 1])
def test_an_unreadable_copy_falls_back_to_another_copy_of_the_same_content(make_product, make_image, broken):
    copies = [make_image(make_product(), seed=60) for _ in range(2)]
    assert copies[0].sha256 == copies[1].sha256
    copies[broken].image.storage.delete(copies[broken].image.name)
    sync_images([c.pk for c in copies])
    statuses = ProductImage.objects.filter(pk__in=[c.pk for c in copies]).values_list("index_status", flat=True)
    assert set(statuses) == {IndexStatus.INDEXED}  # the content has a vector: every photo of it is searchable
    assert {c.pk for c in copies} <= indexed_ids()
    assert ImageEmbedding.objects.filter(sha256=copies[0].sha256).count() == 1


def test_content_with_no_readable_copy_fails_every_photo_of_it(make_product, make_image):
    copies = [make_image(make_product(), seed=61) for _ in range(2)]
    for copy in copies:
        copy.image.storage.delete(copy.image.name)
    outcome = embed_images(copies, get_extractor())
    assert outcome.vectors == {} and set(outcome.errors) == {c.pk for c in copies}
    assert all("cannot read image" in error for error in outcome.errors.values())


def test_a_model_failure_fails_every_photo_of_the_content(make_product, make_image, monkeypatch):
    copies = [make_image(make_product(), seed=62) for _ in range(2)]
    extractor = get_extractor()
    monkeypatch.setattr(extractor, "embed", lambda batch: (_ for _ in ()).throw(RuntimeError("out of memory")))
    outcome = embed_images(copies, extractor)
    assert set(outcome.errors) == {c.pk for c in copies}
    assert all("out of memory" in error for error in outcome.errors.values())


def test_decoding_photos_in_parallel_gives_the_vectors_and_errors_of_one_at_a_time(make_product, make_image, settings):
    photos = [make_image(make_product(), seed=70 + k) for k in range(5)]
    photos[2].image.storage.delete(photos[2].image.name)
    outcomes = {}
    for workers in (1, 2):
        settings.VISUALSEARCH = {**settings.VISUALSEARCH, "MAX_CONCURRENT_DECODES": workers}
        ImageEmbedding.objects.all().delete()
        outcomes[workers] = embed_images(photos, get_extractor())
    one, parallel = outcomes[1], outcomes[2]
    assert set(parallel.errors) == set(one.errors) == {photos[2].pk} and parallel.computed == one.computed == 4
    assert parallel.vectors.keys() == one.vectors.keys()
    for sha, vector in one.vectors.items():
        np.testing.assert_allclose(parallel.vectors[sha], vector, atol=1e-6)


def test_pipelined_batches_give_the_outcomes_of_one_batch_at_a_time(make_product, make_image):
    photos = [make_image(make_product(), seed=80 + k) for k in range(7)]
    photos[4].image.storage.delete(photos[4].image.name)
    batches = [photos[0:3], photos[3:6], photos[6:7]]
    one_by_one = [embed_images(batch, get_extractor()) for batch in batches]
    ImageEmbedding.objects.all().delete()
    pipelined = list(embed_pipelined(batches, get_extractor()))
    assert [batch for batch, _ in pipelined] == batches  # in order, each with its own outcome
    for (_, outcome), reference in zip(pipelined, one_by_one):
        assert outcome.errors.keys() == reference.errors.keys() and outcome.computed == reference.computed
        assert outcome.vectors.keys() == reference.vectors.keys()
    assert set(one_by_one[1].errors) == {photos[4].pk}
    assert ImageEmbedding.objects.count() == 6
