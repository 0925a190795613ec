from __future__ import annotations

import hashlib

import pytest
from django.db import IntegrityError

from catalog.models import IndexStatus, Product
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
