from __future__ import annotations

import io
import os
import time

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import transaction

from catalog.models import ProductImage
from tests.conftest import encode, scene

pytestmark = pytest.mark.django_db


def stored(photo: ProductImage) -> bool:
    return photo.image.storage.exists(photo.image.name)


def test_a_deleted_photos_file_goes_after_commit(make_image, django_capture_on_commit_callbacks, media_root):
    photo = make_image(seed=1)
    name = photo.image.name
    with django_capture_on_commit_callbacks(execute=True):
        photo.delete()
    assert not photo.image.storage.exists(name)


def test_a_rolled_back_delete_keeps_the_file(make_image, media_root):
    photo = make_image(seed=2)
    with pytest.raises(RuntimeError), transaction.atomic():
        ProductImage.objects.get(pk=photo.pk).delete()
        raise RuntimeError("rollback")
    assert stored(photo)


def test_a_replaced_file_goes_and_the_new_one_stays(make_image, django_capture_on_commit_callbacks, media_root):
    photo = make_image(seed=3)
    old = photo.image.name
    with django_capture_on_commit_callbacks(execute=True):
        photo.image.save("new.jpg", ContentFile(encode(scene(4))))
    assert not photo.image.storage.exists(old) and stored(photo)


def test_a_file_another_row_still_names_is_kept(make_image, django_capture_on_commit_callbacks, media_root):
    photo = make_image(seed=5)
    twin = ProductImage.objects.create(product=photo.product, image=photo.image.name, sha256=photo.sha256)
    with django_capture_on_commit_callbacks(execute=True):
        photo.delete()
    assert stored(twin)


def test_media_orphans_lists_and_deletes_unreferenced_files(make_image, media_root):
    kept = make_image(seed=6)
    orphan = kept.image.storage.save("products/gone/orphan.jpg", ContentFile(b"x"))
    old = time.time() - 3600 * 2
    os.utime(kept.image.storage.path(orphan), (old, old))
    out = io.StringIO()
    call_command("media_orphans", stdout=out, stderr=io.StringIO())
    assert out.getvalue().split() == [orphan]
    call_command("media_orphans", "--delete", stdout=io.StringIO(), stderr=io.StringIO())
    assert not kept.image.storage.exists(orphan) and stored(kept)
