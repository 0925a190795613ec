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
    assert_json_error(api.get(URL), 405)
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
