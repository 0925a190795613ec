from __future__ import annotations

import io

import pytest
from PIL import Image
from rest_framework.test import APIClient

from tests.conftest import another_view, encode, scene, scene_jpeg

pytestmark = pytest.mark.django_db
URL = "/api/search/"


@pytest.fixture
def api():
    return APIClient()


def upload(data: bytes, name: str = "query.jpg") -> io.BytesIO:
    file = io.BytesIO(data)
    file.name = name
    return file


def test_search_returns_products_best_first(api, catalog):
    response = api.post(URL, {"image": upload(encode(another_view(scene(2)))), "threshold": -1}, format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["extractor"] and body["took_ms"] > 0
    first = body["results"][0]
    assert first["relation_id"] == "sku-2"
    assert set(first) >= {"relation_id", "match", "score", "inliers", "product", "matched_image"}
    assert first["match"] in ("exact", "similar") and first["inliers"] >= 0
    assert set(first["product"]) >= {"id", "title", "url", "price", "category"}
    assert first["matched_image"]["url"].startswith("http://testserver/media/")
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_limit_offset_category(api, catalog):
    body = api.post(URL, {"image": upload(scene_jpeg(0)), "threshold": -1, "limit": 1, "offset": 1,
                          "category": "shoes"}, format="multipart").json()
    assert len(body["results"]) == 1 and body["results"][0]["product"]["category"] == "shoes"


@pytest.fixture
def priced_catalog(catalog, django_capture_on_commit_callbacks):
    """The catalog with prices 10, 20, … and every third product out of stock, changed by admin-style saves (so
    the index learns them the way it would in the shop)."""
    with django_capture_on_commit_callbacks(execute=True):
        for n, product in enumerate(catalog):
            product.price, product.stock = 10 * (n + 1), 0 if n % 3 == 0 else 5
            product.save()
    from visualsearch.registry import get_index

    get_index().refresh()
    return catalog


@pytest.mark.parametrize("params, expected", [
    ({"min_price": "20", "max_price": "40"}, {"sku-1", "sku-2", "sku-3"}),
    ({"max_price": "25.50"}, {"sku-0", "sku-1"}),
    ({"in_stock": "true"}, {"sku-1", "sku-2", "sku-4"}),  # sku-3 is out of stock; sku-5 inactive
    ({"in_stock": "true", "min_price": "30", "category": "shoes"}, set()),  # shoes ≥ 30: sku-3 (no stock), sku-5
])
def test_price_and_stock_filters(api, priced_catalog, params, expected):
    response = api.post(URL, {"image": upload(scene_jpeg(2)), "threshold": -1, **params}, format="multipart")
    assert response.status_code == 200, response.content
    assert {r["relation_id"] for r in response.json()["results"]} == expected


@pytest.mark.parametrize("params, field", [
    ({"min_price": "-1"}, "min_price"), ({"max_price": "abc"}, "max_price"),
    ({"min_price": "50", "max_price": "10"}, "max_price"), ({"category": "no-such-category"}, "category"),
    ({"in_stock": "perhaps"}, "in_stock"),
])
def test_bad_filters_are_a_400_naming_the_field(api, catalog, params, field):
    response = api.post(URL, {"image": upload(scene_jpeg(2)), **params}, format="multipart")
    assert response.status_code == 400 and field in response.json()["error"]["fields"], response.content


def test_more_like_this_by_image_id(api, catalog):
    photo = catalog[1].images.first()
    body = api.post(URL, {"image_id": photo.pk, "threshold": -1}, format="json").json()
    assert len(body["results"]) == 5  # every active product, sku-1 through its other photo
    assert photo.pk not in [result["matched_image"]["id"] for result in body["results"]]


def test_more_like_this_for_an_inactive_product_is_not_found(api, catalog):
    photo = catalog[5].images.first()
    assert_json_error(api.post(URL, {"image_id": photo.pk}, format="json"), 404, "not_found")


def test_more_like_this_for_a_photo_with_no_vector_and_no_file(api, catalog):
    from visualsearch.models import ImageEmbedding

    photo = catalog[1].images.first()
    ImageEmbedding.objects.filter(sha256=photo.sha256).delete()
    photo.image.storage.delete(photo.image.name)
    assert_json_error(api.post(URL, {"image_id": photo.pk}, format="json"), 409, "image_unavailable")


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


@pytest.mark.parametrize(
    "payload, status, code",
    [
        ({}, 400, "invalid"),
        ({"limit": "5"}, 400, "invalid"),
        ({"image": "not-a-file"}, 400, "invalid"),
        ({"image_id": "abc"}, 400, "invalid"),
        ({"image_id": 0}, 400, "invalid"),
        ({"image_id": 10**9}, 404, "not_found"),
        ({"image_id": 1, "limit": 0}, 400, "invalid"),
        ({"image_id": 1, "limit": 10**6}, 400, "invalid"),
        ({"image_id": 1, "limit": "ten"}, 400, "invalid"),
        ({"image_id": 1, "offset": -1}, 400, "invalid"),
        ({"image_id": 1, "threshold": 2}, 400, "invalid"),
        ({"image_id": 1, "threshold": "nan"}, 400, "invalid"),
        ({"image_id": 1, "threshold": "inf"}, 400, "invalid"),
        ({"image_id": 1, "category": "x" * 500}, 400, "invalid"),
    ],
)
def test_bad_parameters(api, catalog, payload, status, code):
    assert_json_error(api.post(URL, payload, format="multipart"), status, code)


def test_both_image_and_image_id(api, catalog):
    error = assert_json_error(
        api.post(URL, {"image": upload(scene_jpeg(1)), "image_id": 1}, format="multipart"), 400, "invalid"
    )
    assert "exactly one" in error["message"]


@pytest.mark.parametrize(
    "data, status",
    [
        (b"", 400),  # empty upload
        (b"hello, I am text", 415),  # not an image
        (scene_jpeg(1)[:300], 400),  # truncated
    ],
)
def test_bad_uploads(api, catalog, data, status):
    assert_json_error(api.post(URL, {"image": upload(data)}, format="multipart"), status)


def test_too_large_file(api, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "MAX_UPLOAD_BYTES": 50_000}
    big = encode(Image.effect_noise((400, 400), 80).convert("RGB"), "PNG")
    assert len(big) > 50_000
    assert_json_error(api.post(URL, {"image": upload(big, "big.png")}, format="multipart"), 413)


def test_too_many_pixels(api, catalog):
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")
    assert_json_error(api.post(URL, {"image": upload(bomb, "bomb.png")}, format="multipart"), 413, "too_many_pixels")


def test_a_phone_original_over_the_pixel_limit_is_searched(api, catalog, settings):
    # 3 MP against a 1 MP limit: a 48 MP phone JPEG against the 16 MP default, scaled down to keep the test quick.
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "MAX_PIXELS": 1_000_000}
    photo = encode(scene(7, size=(2000, 1500)))
    response = api.post(URL, {"image": upload(photo, "IMG_0001.jpg")}, format="multipart")
    assert response.status_code == 200, response.content


def test_malformed_multipart_and_wrong_methods(api, catalog):
    response = api.generic("POST", URL, b"--x\r\nbroken", content_type="multipart/form-data; boundary=x")
    assert response.status_code in (400, 415) and "error" in response.json()
    assert_json_error(api.get(URL), 400)  # GET takes a `query` handle or `image_id` (the `next` links)
    assert_json_error(api.delete(URL), 405)
    assert_json_error(api.post(URL, b"{not json", content_type="application/json"), 400)


def test_unknown_api_path_is_json(api):
    assert_json_error(api.get("/api/nope/"), 404)


def test_index_outage_is_503(api, catalog, settings):
    settings.VISUALSEARCH_INDEXES = {"default": {"BACKEND": "tests.visualsearch.unavailable.UnavailableIndex"}}
    assert_json_error(api.post(URL, {"image": upload(scene_jpeg(1))}, format="multipart"), 503, "unavailable")


def test_products_api_lists_active_products(api, catalog):
    body = api.get("/api/products/").json()
    assert body["count"] == 5
    assert body["results"][0]["images"][0]["url"].startswith("http://testserver/media/")
    assert api.get(f"/api/products/{catalog[5].pk}/").status_code == 404


def test_schema_and_docs(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200 and "/api/search/" in schema.json()["paths"]
    assert api.get("/api/docs/").status_code == 200


def test_the_openapi_schema_is_valid_and_documents_every_parameter(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    schema = (tmp_path / "schema.yml").read_text()
    for name in ("box", "query", "min_price", "max_price", "in_stock", "category", "next"):
        assert f"{name}:" in schema or f"name: {name}" in schema


def test_throttle_cannot_be_dodged_with_forwarded_for(api, catalog, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    # DRF reads the rates into a class attribute at import time, so a settings override would not reach them.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"visual_search": "2/min"})
    photo = catalog[0].images.first()
    statuses = [
        api.post(URL, {"image_id": photo.pk}, format="json", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code
        for n in range(3)
    ]
    assert statuses == [200, 200, 429]
    cache.clear()


@pytest.mark.parametrize("box", ["0.1,0.2,0.6", "a,b,c,d", "0.6,0.2,0.1,0.9", "0,0,1.5,1", "-0.1,0,1,1",
                                 "0.1,0.1,0.11,0.9", "nan,0,1,1", "0.1,0.2,0.6,0.9,0.1"])
def test_a_nonsense_box_is_a_400_naming_the_field(api, catalog, box):
    response = api.post(URL, {"image": upload(scene_jpeg(1)), "box": box}, format="multipart")
    assert response.status_code == 400, response.content
    assert "box" in response.json()["error"]["fields"]


def test_a_box_with_image_id_is_a_400(api, catalog):
    image_id = catalog[1].images.first().pk
    response = api.post(URL, {"image_id": image_id, "box": "0,0,1,1"}, format="json")
    assert response.status_code == 400
    assert "box" in response.json()["error"]["fields"]


def test_a_box_limits_the_query_to_that_part_of_the_photo(api, catalog):
    # Left half: product 2's picture; right half: product 4's. The box picks which one is searched.
    left, right = scene(2, size=(256, 256)), scene(4, size=(256, 256))
    both = Image.new("RGB", (512, 256))
    both.paste(left, (0, 0))
    both.paste(right, (256, 0))
    for box, expected in (("0,0,0.5,1", "sku-2"), ("0.5,0,1,1", "sku-4")):
        response = api.post(URL, {"image": upload(encode(both)), "box": box, "threshold": -1}, format="multipart")
        assert response.status_code == 200, response.content
        assert response.json()["results"][0]["relation_id"] == expected


def test_next_links_page_through_without_uploading_again(api, catalog):
    first = api.post(URL, {"image": upload(scene_jpeg(2)), "threshold": -1, "limit": 2, "category": "bags"},
                     format="multipart").json()
    assert len(first["results"]) == 2 and first["query"] and "offset=2" in first["next"]
    second = api.get(first["next"]).json()
    assert len(second["results"]) == 1 and second["next"] is None  # bags: sku-0, sku-2, sku-4
    seen = [r["relation_id"] for r in first["results"] + second["results"]]
    assert sorted(seen) == ["sku-0", "sku-2", "sku-4"]
    again = api.post(URL, {"query": first["query"], "threshold": -1, "category": "shoes"}, format="json").json()
    assert {r["product"]["category"] for r in again["results"]} == {"shoes"}  # new filters, same photo


def test_a_page_that_is_not_full_has_no_next_and_keeps_no_photo(api, catalog):
    body = api.post(URL, {"image": upload(scene_jpeg(2)), "threshold": -1, "limit": 50}, format="multipart").json()
    assert body["next"] is None and body["query"] is None


def test_more_like_this_pages_by_image_id(api, catalog):
    photo = catalog[1].images.first()
    first = api.post(URL, {"image_id": photo.pk, "threshold": -1, "limit": 3}, format="json").json()
    assert f"image_id={photo.pk}" in first["next"] and "query" not in first["next"]
    assert len(api.get(first["next"]).json()["results"]) == 2


def test_an_expired_or_malformed_query_handle(api, catalog):
    assert_json_error(api.get(URL, {"query": "0" * 32}), 410, "expired")
    assert_json_error(api.get(URL, {"query": "../../etc"}), 400)
    assert_json_error(api.get(URL, {"query": "0" * 32, "image_id": 1}), 400)


def test_api_searches_that_found_nothing_close_go_to_the_admin_report(api, catalog, settings, admin_client):
    from visualsearch.models import UnmatchedSearch

    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": 0.999}
    api.post(URL, {"image": upload(scene_jpeg(68)), "category": "bags"}, format="multipart")
    api.post(URL, {"image": upload(scene_jpeg(68)), "category": "bags"}, format="multipart")
    [row] = UnmatchedSearch.objects.all()
    assert row.source == "api" and row.category == "bags" and row.best_score is not None
    page = admin_client.get("/admin/visualsearch/unmatchedsearch/")
    assert page.status_code == 200 and "bags" in page.content.decode()
