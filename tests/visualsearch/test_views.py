from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import another_view, encode, scene

pytestmark = pytest.mark.django_db


def test_search_page_renders_a_form(client):
    response = client.get("/")
    assert response.status_code == 200 and b'enctype="multipart/form-data"' in response.content


def test_uploading_a_photo_shows_the_product_first(client, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    photo = SimpleUploadedFile("q.jpg", encode(another_view(scene(4))), "image/jpeg")
    response = client.post("/", {"image": photo})
    assert response.status_code == 200
    matches = response.context["result"].matches
    assert matches[0].product.relation_id == "sku-4"
    assert b"data:image/jpeg;base64," in response.content  # the shopper's photo is shown back
    assert matches[0].product.title.encode() in response.content


def test_a_bad_upload_shows_an_error_not_a_crash(client, catalog):
    response = client.post("/", {"image": SimpleUploadedFile("q.jpg", b"garbage", "image/jpeg")})
    assert response.status_code == 400 and b'role="alert"' in response.content


def test_more_like_this_link(client, catalog):
    photo = catalog[0].images.first()
    response = client.get(f"/?image_id={photo.pk}")
    assert response.status_code == 200 and response.context["result"].matches


def test_more_like_this_leaves_out_the_product_the_shopper_came_from(client, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    photo = catalog[0].images.first()
    matches = client.get(f"/?image_id={photo.pk}").context["result"].matches
    assert len(matches) == 4 and catalog[0] not in [match.product for match in matches]


def test_more_like_this_for_an_inactive_product_is_not_found(client, catalog):
    response = client.get(f"/?image_id={catalog[5].images.first().pk}")
    assert response.status_code == 404 and response.context["result"] is None


def test_more_like_this_for_a_photo_with_no_vector_and_no_file(client, catalog):
    from visualsearch.models import ImageEmbedding

    photo = catalog[1].images.first()
    ImageEmbedding.objects.filter(sha256=photo.sha256).delete()
    photo.image.storage.delete(photo.image.name)
    response = client.get(f"/?image_id={photo.pk}")
    assert response.status_code == 409 and b'role="alert"' in response.content


def test_an_upload_is_decoded_once_for_the_preview_and_the_search(client, catalog, monkeypatch):
    from PIL import Image

    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: opened.append(1) or real_open(*args, **kwargs))
    response = client.post("/", {"image": SimpleUploadedFile("q.jpg", encode(scene(4)), "image/jpeg")})
    assert response.status_code == 200 and response.context["preview"]
    assert len(opened) == 1


def test_product_page(client, catalog):
    response = client.get(catalog[0].get_absolute_url())
    assert response.status_code == 200 and b"More like this" in response.content
    assert client.get(catalog[5].get_absolute_url()).status_code == 404  # inactive


@pytest.mark.parametrize("image_id", ["²", "9" * 5000, "-1", "abc"])
def test_odd_image_ids_are_ignored_not_a_crash(client, image_id):
    response = client.get("/", {"image_id": image_id})
    assert response.status_code == 200 and response.context["result"] is None


def test_the_page_is_throttled_like_the_api(client, catalog, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    # DRF reads the rates into a class attribute at import time, so a settings override would not reach them.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"visual_search": "2/min"})
    photo = catalog[0].images.first()
    statuses = [client.get(f"/?image_id={photo.pk}").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    cache.clear()
