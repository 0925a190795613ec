"""The demo catalog `make run` loads: real photos from scikit-image, and a shopper's photo of one finds it first."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from PIL import Image, ImageEnhance

from catalog.demo import DEMO_PRODUCTS, sample_path
from catalog.models import IndexStatus, Product, ProductImage
from tests.conftest import encode, indexed_ids
from visualsearch.registry import get_index
from visualsearch.services import search_by_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo", stdout=io.StringIO())
    get_index().refresh()  # Elasticsearch makes writes searchable about once a second


def shopper_photo(filename: str) -> bytes:
    """A new 'phone photo' of a demo product: tilted, re-framed, darker, larger."""
    image = Image.open(sample_path(filename)).convert("RGB")
    w, h = image.size
    image = image.rotate(6, expand=False).crop((w // 12, h // 14, w - w // 15, h - h // 10)).resize((1200, 900))
    return encode(ImageEnhance.Brightness(image).enhance(0.85))


def test_demo_catalog_is_loaded_and_indexed(demo):
    assert Product.objects.count() == len(DEMO_PRODUCTS)
    assert set(ProductImage.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}
    assert indexed_ids() == set(ProductImage.objects.values_list("pk", flat=True))


def test_loading_twice_changes_nothing(demo):
    call_command("load_demo", stdout=io.StringIO())
    assert ProductImage.objects.count() == sum(2 if len(p.files) == 1 else len(p.files) for p in DEMO_PRODUCTS)


@pytest.mark.parametrize("relation_id, filename", [
    ("demo-cat-poster", "chelsea.png"), ("demo-espresso-cup", "coffee.png"), ("demo-rocket", "rocket.jpg"),
    ("demo-astronaut-print", "astronaut.png"), ("demo-motorcycle", "motorcycle_left.png"),
])  # fmt: skip
def test_a_shoppers_photo_of_a_demo_product_finds_it_first(demo, relation_id, filename):
    result = search_by_image(image_bytes=shopper_photo(filename))
    assert result.matches and result.matches[0].product.relation_id == relation_id


@pytest.mark.parametrize("relation_id, filename", [
    ("demo-cat-poster", "chelsea.png"), ("demo-espresso-cup", "coffee.png"), ("demo-rocket", "rocket.jpg"),
    ("demo-astronaut-print", "astronaut.png"),
])  # fmt: skip
def test_after_make_run_the_demo_products_are_recognised_exactly(demo, relation_id, filename):
    call_command("reindex", missing=True, verbosity=0, stdout=io.StringIO())  # what `make run` does next
    get_index().refresh()
    result = search_by_image(image_bytes=shopper_photo(filename), threshold=0.99)
    assert result.matches and result.matches[0].product.relation_id == relation_id
    assert result.matches[0].match == "exact"
