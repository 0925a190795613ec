from __future__ import annotations

import hashlib

import pytest
from django.db import IntegrityError, transaction

from catalog.models import IndexStatus, Product, ProductImage
from tests.conftest import scene_jpeg

pytestmark = pytest.mark.django_db


def test_image_records_content_hash_and_size(make_image):
    data = scene_jpeg(1)
    photo = make_image(data=data)
    assert photo.sha256 == hashlib.sha256(data).hexdigest()
    assert (photo.width, photo.height) == (256, 256)


def test_identical_uploads_share_a_hash(make_image, make_product):
    a = make_image(seed=5)
    b = make_image(make_product(), seed=5)
    assert a.sha256 == b.sha256 and a.image.name != b.image.name


def test_new_images_start_pending(make_image):
    assert make_image().index_status == IndexStatus.PENDING


def test_relation_id_is_unique(make_product):
    make_product(relation_id="sku-1")
    with pytest.raises(IntegrityError):
        make_product(relation_id="sku-1")


def test_browsable_hides_inactive_products(make_product):
    shown, hidden = make_product(), make_product(is_active=False)
    assert list(Product.objects.browsable()) == [shown]
    assert hidden.pk


def test_unicode_titles_round_trip(make_product):
    product = make_product(title="Tasse à café ☕ 咖啡杯 🐈")
    assert Product.objects.get(pk=product.pk).title == "Tasse à café ☕ 咖啡杯 🐈"


# --- the content hash follows the file (issue 10, items 1 and 2) ---------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_replacing_the_file_with_django_file_save_rehashes(make_image, tmp_path):
    from django.core.files import File

    photo = make_image(seed=1)
    new = scene_jpeg(2, size=(200, 120))
    (tmp_path / "new.jpg").write_bytes(new)
    with open(tmp_path / "new.jpg", "rb") as handle:
        photo.image.save("new.jpg", File(handle))  # commits the file first, then calls save()
    photo.refresh_from_db()
    assert photo.sha256 == sha(new)
    assert (photo.width, photo.height) == (200, 120)


def test_assigning_a_stored_file_name_rehashes(make_image):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    photo = make_image(seed=1)
    photo = ProductImage.objects.get(pk=photo.pk)  # as loaded by a view or a shell session
    new = scene_jpeg(3, size=(180, 90))
    name = default_storage.save("products/elsewhere/other.jpg", ContentFile(new))
    photo.image = name  # no upload: the file is already in storage
    photo.save()
    photo.refresh_from_db()
    assert photo.sha256 == sha(new)
    assert (photo.width, photo.height) == (180, 90)


def test_a_file_overwritten_under_the_same_name_is_rehashed(make_image, settings, tmp_path):
    """Storages that overwrite (S3 by default) keep the name: only the write itself tells the file changed."""
    from django.core.files import File

    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"allow_overwrite": True}}}  # fmt: skip
    photo = ProductImage.objects.get(pk=make_image(seed=1, name="photo.jpg").pk)
    new = scene_jpeg(5, size=(64, 48))
    (tmp_path / "photo.jpg").write_bytes(new)
    with open(tmp_path / "photo.jpg", "rb") as handle:
        photo.image.save("photo.jpg", File(handle))
    photo.refresh_from_db()
    assert photo.image.name.endswith("/photo.jpg")  # overwritten in place
    assert photo.sha256 == sha(new) and (photo.width, photo.height) == (64, 48)


def test_saving_only_the_file_field_writes_its_hash_too(make_image):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    photo = ProductImage.objects.get(pk=make_image(seed=1).pk)
    new = scene_jpeg(6, size=(100, 50))
    photo.image = default_storage.save("products/elsewhere/only.jpg", ContentFile(new))
    photo.save(update_fields=["image"])
    stored = ProductImage.objects.get(pk=photo.pk)
    assert stored.sha256 == sha(new) and (stored.width, stored.height) == (100, 50)


def test_a_fixture_without_hashes_is_refused(make_product, tmp_path):
    """loaddata writes rows raw, around every save hook: a photo without its hash must not get in."""
    import json

    from django.core.management import call_command

    product = make_product()
    fixture = tmp_path / "photos.json"
    fixture.write_text(json.dumps([{"model": "catalog.productimage", "pk": 77, "fields": {
        "product": product.pk, "image": "products/x/a.jpg", "width": 1, "height": 1,
        "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}}]))  # fmt: skip
    with pytest.raises(IntegrityError, match="sha256"), transaction.atomic():
        call_command("loaddata", str(fixture), verbosity=0)


def test_saving_without_touching_the_file_does_not_read_it(make_image, monkeypatch):
    from catalog import models

    photo = ProductImage.objects.get(pk=make_image(seed=1).pk)
    monkeypatch.setattr(models, "file_sha256", lambda f: pytest.fail("the unchanged file was hashed again"))
    photo.position = 3
    photo.save()
    ProductImage.objects.get(pk=photo.pk).save(update_fields=["position"])


def test_bulk_created_photos_are_hashed(make_product):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    product = make_product()
    data = [scene_jpeg(10), scene_jpeg(11)]
    names = [default_storage.save(f"products/bulk/{n}.jpg", ContentFile(d)) for n, d in enumerate(data)]
    ProductImage.objects.bulk_create([ProductImage(product=product, image=name) for name in names])
    stored = ProductImage.objects.filter(product=product).order_by("pk")
    assert [p.sha256 for p in stored] == [sha(d) for d in data]


def test_the_database_refuses_an_empty_hash(make_image):
    photo = make_image(seed=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        ProductImage.objects.filter(pk=photo.pk).update(sha256="")


def test_a_placeholder_hash_is_replaced_on_save(make_image):
    data = scene_jpeg(4)
    photo = make_image(data=data)
    ProductImage.objects.filter(pk=photo.pk).update(sha256=f"unhashed:{photo.pk}")  # as the migration leaves it
    photo = ProductImage.objects.get(pk=photo.pk)
    photo.save()
    assert ProductImage.objects.get(pk=photo.pk).sha256 == sha(data)


def test_the_hash_field_must_be_declared_after_the_file():
    from django.db import models
    from django.test.utils import isolate_apps

    from catalog.models import ContentImageField

    with isolate_apps("catalog"):

        class Misordered(models.Model):
            sha256 = models.CharField(max_length=64)
            image = ContentImageField(hash_field="sha256")

            class Meta:
                app_label = "catalog"

    assert [error.id for error in Misordered._meta.get_field("image").check()] == ["catalog.E001"]
    assert ProductImage._meta.get_field("image").check() == []
