"""Saving and deleting in the catalog keeps the index in step, after commit, without ever failing the save."""
from __future__ import annotations

import pytest
from django.db import transaction

from catalog.models import IndexStatus, ProductImage
from tests.conftest import indexed_ids
from visualsearch.models import ImageEmbedding
from visualsearch.registry import get_index

pytestmark = pytest.mark.django_db


def test_nothing_is_indexed_before_commit(make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        photo = make_image(seed=1)
    assert len(callbacks) == 1
    assert photo.pk not in indexed_ids()
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.PENDING


def test_photo_is_embedded_and_indexed_on_commit(make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=1)
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.INDEXED and photo.indexed_at
    assert photo.pk in indexed_ids()
    assert ImageEmbedding.objects.filter(sha256=photo.sha256).count() == 1


def test_photos_saved_together_are_handled_in_one_batch(make_product, make_image, django_capture_on_commit_callbacks):
    product = make_product()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            photos = [make_image(product, seed=s) for s in range(3)]
    assert len(callbacks) == 1
    assert {p.pk for p in photos} <= indexed_ids()


def test_a_rolled_back_save_indexes_nothing(make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                make_image(seed=2)
                raise RuntimeError("the admin form failed later")
        except RuntimeError:
            pass
    assert callbacks == [] and indexed_ids() == set()


def test_unreadable_file_fails_the_index_not_the_save(make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(data=b"\xff\xd8\xff not really a jpeg", name="broken.jpg")
    photo.refresh_from_db()
    assert ProductImage.objects.filter(pk=photo.pk).exists()
    assert photo.index_status == IndexStatus.FAILED
    assert "cannot read image" in photo.index_error


def test_deleting_a_photo_removes_it_from_the_index(make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=3)
    with django_capture_on_commit_callbacks(execute=True):
        photo.delete()
    assert photo.pk not in indexed_ids()


def test_deleting_a_product_removes_its_photos(make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=4)
    with django_capture_on_commit_callbacks(execute=True):
        photo.product.delete()
    assert indexed_ids() == set()


def test_deactivating_a_product_hides_it_from_search(make_image, django_capture_on_commit_callbacks):
    from tests.conftest import scene_jpeg
    from visualsearch.services import search_by_image

    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=5)
    get_index().refresh()
    assert search_by_image(image_bytes=scene_jpeg(5)).matches
    with django_capture_on_commit_callbacks(execute=True):
        photo.product.is_active = False
        photo.product.save()
    get_index().refresh()
    assert search_by_image(image_bytes=scene_jpeg(5)).matches == []


def test_identical_files_are_embedded_once(make_product, make_image, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        a = make_image(seed=6)
        b = make_image(make_product(), seed=6)
    assert ImageEmbedding.objects.count() == 1
    assert {a.pk, b.pk} <= indexed_ids()


def test_fixture_loads_are_ignored(make_product, django_capture_on_commit_callbacks):
    from django.db.models.signals import post_save

    product = make_product()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        post_save.send(ProductImage, instance=ProductImage(pk=999, product=product), created=True, raw=True)
    assert callbacks == []


def test_index_outage_leaves_photos_pending_for_reindex(settings, make_image, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    working = settings.VISUALSEARCH_INDEXES
    settings.VISUALSEARCH_INDEXES = {"default": {"BACKEND": "tests.visualsearch.unavailable.UnavailableIndex"}}
    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=7)
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.PENDING and "index unavailable" in photo.index_error

    settings.VISUALSEARCH_INDEXES = working
    call_command("reindex", "--missing", verbosity=0)
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.INDEXED and photo.pk in indexed_ids()


def test_replacing_a_photo_with_a_broken_file_removes_the_old_picture(make_image, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile

    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=8)
    assert photo.pk in indexed_ids()
    with django_capture_on_commit_callbacks(execute=True):
        photo.image.save("replacement.jpg", ContentFile(b"\xff\xd8\xff broken"), save=False)
        photo.save()
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.FAILED
    assert photo.pk not in indexed_ids()


def test_a_save_that_changes_no_indexed_field_sends_nothing(make_image, django_capture_on_commit_callbacks):
    """Title or description never reach the index: no re-send, no generation bump (a reload elsewhere)."""
    from catalog.models import Product
    from visualsearch.models import IndexGeneration

    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=9)
    generations = list(IndexGeneration.objects.values_list("generation", flat=True))
    product = Product.objects.get(pk=photo.product_id)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        product.title = "Renamed"
        product.save()
        product.save(update_fields=["description"])
    assert callbacks == []
    assert list(IndexGeneration.objects.values_list("generation", flat=True)) == generations


def test_a_category_change_reaches_the_index(make_image, django_capture_on_commit_callbacks):
    from catalog.models import Product
    from visualsearch.backends.base import SearchFilters
    from visualsearch.services.embedding import stored_vectors

    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=10)
    product = Product.objects.get(pk=photo.product_id)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        product.category = "hats"
        product.save(update_fields=["category"])
    assert len(callbacks) == 1
    index = get_index()
    index.refresh()
    vector = stored_vectors([photo.sha256], index.extractor_id)[photo.sha256]
    assert index.search(vector, limit=1, filters=SearchFilters(category="hats"))[0].image_id == photo.pk
