from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from catalog.models import ProductImage
from tests.conftest import another_view, encode, scene, scene_jpeg
from visualsearch.imaging import ImageRejected
from visualsearch.models import ImageEmbedding
from visualsearch.registry import get_index
from visualsearch.services import search as search_module
from visualsearch.services import search_by_image, sync_images
from visualsearch.services.search import ImageUnavailable, UnknownImage, decode_query, more_like_this

pytestmark = pytest.mark.django_db


def relation_ids(result) -> list[str]:
    return [match.product.relation_id for match in result.matches]


def test_another_photo_of_a_product_finds_it_first(catalog):
    result = search_by_image(image_bytes=encode(another_view(scene(3))), threshold=-1)
    assert relation_ids(result)[0] == "sku-3"
    assert result.matches[0].image.product_id == catalog[3].pk


def test_one_result_per_product_with_the_best_photo(catalog):
    result = search_by_image(image_bytes=scene_jpeg(102), threshold=-1)
    assert len(relation_ids(result)) == len(set(relation_ids(result))) == 5  # the inactive product is hidden
    best = result.matches[0]
    assert best.product.relation_id == "sku-2" and best.score > 0.99
    assert best.image.sha256 == best.product.images.order_by("pk")[1].sha256


def test_scores_descend_and_threshold_cuts(catalog):
    everything = search_by_image(image_bytes=scene_jpeg(1), threshold=-1)
    scores = [m.score for m in everything.matches]
    assert scores == sorted(scores, reverse=True)
    cut = (scores[0] + scores[1]) / 2
    assert relation_ids(search_by_image(image_bytes=scene_jpeg(1), threshold=cut)) == ["sku-1"]


def test_category_filter_and_paging(catalog):
    shoes = search_by_image(image_bytes=scene_jpeg(0), threshold=-1, category="shoes")
    assert set(relation_ids(shoes)) == {"sku-1", "sku-3"}
    page1 = search_by_image(image_bytes=scene_jpeg(0), threshold=-1, limit=2)
    page2 = search_by_image(image_bytes=scene_jpeg(0), threshold=-1, limit=2, offset=2)
    everything = search_by_image(image_bytes=scene_jpeg(0), threshold=-1, limit=4)
    assert relation_ids(page1) + relation_ids(page2) == relation_ids(everything)


def test_more_like_this_reuses_the_stored_vector(catalog, django_assert_max_num_queries):
    photo = catalog[4].images.first()
    search_by_image(image_id=photo.pk)  # warm the in-process index
    with django_assert_max_num_queries(6):  # photo, active vocabulary, its vector, generation, images, products
        result = search_by_image(image_id=photo.pk, threshold=-1)
    assert result.matches and "embed" not in result.timings_ms and "decode" not in result.timings_ms


def test_more_like_this_never_returns_the_query_photo(catalog):
    photo = catalog[4].images.first()
    twin = ProductImage(product=catalog[2])  # the same picture on another product is a real answer
    with photo.image.open("rb") as original:
        twin.image.save("twin.jpg", ContentFile(original.read()))
    sync_images([twin.pk])
    get_index().refresh()
    result = search_by_image(image_id=photo.pk, threshold=-1)
    assert photo.pk not in [match.image.pk for match in result.matches]
    assert result.matches[0].image.pk == twin.pk and result.matches[0].score == pytest.approx(1.0, abs=1e-5)
    assert "sku-4" in relation_ids(result)  # the product itself still matches through its other photo


def test_shoppers_cannot_ask_about_photos_of_inactive_products(catalog):
    hidden = catalog[5].images.first()
    assert search_by_image(image_id=hidden.pk, threshold=-1).matches  # staff (admin "find similar") may
    with pytest.raises(UnknownImage):
        more_like_this(image_id=hidden.pk)


def test_more_like_this_from_a_product_page_leaves_out_that_product(catalog):
    photo = catalog[4].images.first()
    assert "sku-4" in relation_ids(more_like_this(image_id=photo.pk, threshold=-1))
    assert "sku-4" not in relation_ids(more_like_this(image_id=photo.pk, threshold=-1, exclude_product=True))


def test_a_photo_with_no_vector_and_no_file_is_unavailable_not_a_crash(catalog):
    photo = catalog[1].images.first()
    ImageEmbedding.objects.filter(sha256=photo.sha256).delete()
    photo.image.storage.delete(photo.image.name)
    with pytest.raises(ImageUnavailable):
        more_like_this(image_id=photo.pk)


def test_decoded_pixels_are_searched_without_decoding_again(catalog, monkeypatch):
    pixels = decode_query(encode(another_view(scene(3))))
    monkeypatch.setattr(search_module, "decode_image", None)  # any decode would fail
    result = search_by_image(image=pixels, threshold=-1)
    assert relation_ids(result)[0] == "sku-3" and "decode" not in result.timings_ms


def test_unknown_image_id(catalog):
    with pytest.raises(UnknownImage):
        search_by_image(image_id=10**9)


def test_bad_bytes_are_rejected(catalog):
    with pytest.raises(ImageRejected):
        search_by_image(image_bytes=b"nope")


def test_timings_cover_every_stage(catalog):
    result = search_by_image(image_bytes=scene_jpeg(0))
    assert set(result.timings_ms) == {"decode", "embed", "search", "assemble", "total"}
    assert result.took_ms >= result.timings_ms["embed"]


def test_results_load_in_constant_queries(catalog, django_assert_max_num_queries):
    search_by_image(image_bytes=scene_jpeg(0), threshold=-1)  # warm the in-process index
    with django_assert_max_num_queries(4):  # active vocabulary, generation check, images, products
        result = search_by_image(image_bytes=scene_jpeg(0), threshold=-1)
        [m.image.product.title for m in result.matches]


def test_a_grey_photo_searches_too(catalog):
    grey = encode(Image.new("L", (300, 200), 128), "PNG")
    assert search_by_image(image_bytes=grey, threshold=-1).matches
