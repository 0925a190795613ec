from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import another_view, encode, scene

pytestmark = pytest.mark.django_db


def test_search_page_renders_a_form(client):
    response = client.get("/search/")
    assert response.status_code == 200 and b'enctype="multipart/form-data"' in response.content


def test_uploading_a_photo_shows_the_product_first(client, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    photo = SimpleUploadedFile("q.jpg", encode(another_view(scene(4))), "image/jpeg")
    response = client.post("/search/", {"image": photo}, follow=True)
    assert response.status_code == 200 and response.redirect_chain[0][1] == 303
    matches = response.context["result"].matches
    assert matches[0].product.relation_id == "sku-4"
    assert b"data:image/jpeg;base64," in response.content  # the shopper's photo is shown back
    assert matches[0].product.title.encode() in response.content


def test_a_bad_upload_shows_an_error_not_a_crash(client, catalog):
    response = client.post("/search/", {"image": SimpleUploadedFile("q.jpg", b"garbage", "image/jpeg")})
    assert response.status_code == 400 and b'role="alert"' in response.content


def test_more_like_this_link(client, catalog):
    photo = catalog[0].images.first()
    response = client.get(f"/search/?image_id={photo.pk}")
    assert response.status_code == 200 and response.context["result"].matches


def test_more_like_this_leaves_out_the_product_the_shopper_came_from(client, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    photo = catalog[0].images.first()
    matches = client.get(f"/search/?image_id={photo.pk}").context["result"].matches
    assert len(matches) == 4 and catalog[0] not in [match.product for match in matches]


def test_more_like_this_for_an_inactive_product_is_not_found(client, catalog):
    response = client.get(f"/search/?image_id={catalog[5].images.first().pk}")
    assert response.status_code == 404 and response.context["result"] is None


def test_more_like_this_for_a_photo_with_no_vector_and_no_file(client, catalog):
    from visualsearch.models import ImageEmbedding

    photo = catalog[1].images.first()
    ImageEmbedding.objects.filter(sha256=photo.sha256).delete()
    photo.image.storage.delete(photo.image.name)
    response = client.get(f"/search/?image_id={photo.pk}")
    assert response.status_code == 409 and b'role="alert"' in response.content


def test_each_request_decodes_the_photo_once(client, catalog, monkeypatch):
    from PIL import Image

    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: opened.append(1) or real_open(*args, **kwargs))
    response = client.post("/search/", {"image": SimpleUploadedFile("q.jpg", encode(scene(4)), "image/jpeg")})
    assert response.status_code == 303 and len(opened) == 1  # checked before it is kept
    response = client.get(response["Location"])
    assert response.status_code == 200 and response.context["preview"]
    assert len(opened) == 2  # the kept copy, once for the preview and the search


def test_product_page(client, catalog):
    response = client.get(catalog[0].get_absolute_url())
    assert response.status_code == 200 and b"More like this" in response.content
    assert client.get(catalog[5].get_absolute_url()).status_code == 404  # inactive


@pytest.mark.parametrize("image_id", ["²", "9" * 5000, "-1", "abc"])
def test_odd_image_ids_are_ignored_not_a_crash(client, image_id):
    response = client.get("/search/", {"image_id": image_id})
    assert response.status_code == 200 and response.context["result"] is None


def test_the_page_is_throttled_like_the_api(client, catalog, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    # DRF reads the rates into a class attribute at import time, so a settings override would not reach them.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"visual_search": "2/min"})
    photo = catalog[0].images.first()
    statuses = [client.get(f"/search/?image_id={photo.pk}").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    cache.clear()


def _search(client, seed: int, **filters):
    photo = SimpleUploadedFile("q.jpg", encode(another_view(scene(seed))), "image/jpeg")
    return client.post("/search/", {"image": photo, **filters})


def test_the_results_url_is_a_short_lived_handle_plus_filters(client, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    posted = _search(client, 3, category="shoes")
    assert posted.status_code == 303 and "category=shoes" in posted["Location"]
    again = client.get(posted["Location"])  # a reload: no new upload
    assert [m.product.relation_id for m in again.context["close"]][0] == "sku-3"
    assert {m.product.category for m in again.context["close"]} == {"shoes"}
    from django.core.cache import cache

    cache.clear()  # the handle expires
    expired = client.get(posted["Location"])
    assert expired.status_code == 410 and b"expired" in expired.content


def test_new_filters_for_the_same_photo_need_no_new_upload(client, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    handle = _search(client, 2)["Location"].split("q=")[1]
    refiltered = client.post("/search/", {"q": handle, "category": "bags"})
    assert refiltered.status_code == 303 and f"q={handle}" in refiltered["Location"]


@pytest.mark.parametrize("filters, field", [
    ({"min_price": "-3"}, "min_price"), ({"min_price": "9", "max_price": "2"}, "max_price"),
    ({"category": "not-a-category"}, "category"),
])
def test_bad_filters_are_shown_on_the_page(client, catalog, filters, field):
    response = _search(client, 1, **filters)
    assert response.status_code == 400 and response.context["form"].errors[field]
    assert b'role="alert"' in response.content


def test_nothing_close_shows_the_nearest_products_under_their_own_heading(client, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": 0.999}
    response = client.get(_search(client, 55)["Location"])
    assert response.context["close"] == [] and len(response.context["nearest"]) == 5
    assert b"No close matches" in response.content and b"Nearest products" in response.content


def test_load_more_links_only_while_results_stay_close(client, catalog, settings, monkeypatch):
    from visualsearch import views

    monkeypatch.setattr(views, "RESULTS_PER_PAGE", 2)
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    first = client.get(_search(client, 2)["Location"])
    assert len(first.context["close"]) == 2 and "page=2" in first.context["next_url"]
    last = client.get(first.context["next_url"].replace("page=2", "page=3"))
    assert len(last.context["close"]) == 1 and last.context["next_url"] is None
    seen = [m.product.pk for page in (first, client.get(first.context["next_url"]), last) for m in page.context["close"]]
    assert len(seen) == len(set(seen)) == 5  # pages never repeat or skip a product


def test_the_product_page_shows_similar_products_but_not_itself(client, catalog):
    response = client.get(catalog[2].get_absolute_url())
    assert b"Similar products" in response.content
    strip = response.content.decode().split("Similar products", 1)[1]
    assert catalog[2].title not in strip and catalog[3].title in strip


def test_a_search_that_found_nothing_close_is_reported_once_without_the_photo(client, catalog, settings):
    from visualsearch.models import UnmatchedSearch

    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": 0.999}
    results_url = _search(client, 66, category="shoes", min_price="1")["Location"]
    client.get(results_url)
    client.get(results_url)  # a reload is the same search
    [row] = UnmatchedSearch.objects.all()
    assert row.source == "page" and row.category == "shoes" and row.filters == {"min_price": "1"}
    assert row.best_score is not None and row.nearest_product.category == "shoes" and not row.photo


def test_the_report_keeps_photos_only_when_allowed(client, catalog, settings, tmp_path):
    from visualsearch.models import UnmatchedSearch

    settings.MEDIA_ROOT = str(tmp_path)
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": 0.999, "KEEP_UNMATCHED_PHOTOS": True}
    client.get(_search(client, 67)["Location"])
    assert UnmatchedSearch.objects.get().photo.name.startswith("unmatched/")


def test_searches_that_found_something_are_not_reported(client, catalog, settings):
    from visualsearch.models import UnmatchedSearch

    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": -1.0}
    client.get(_search(client, 2)["Location"])
    assert not UnmatchedSearch.objects.exists()


def test_a_photo_error_is_tied_to_the_photo_input(client, catalog):
    response = client.post("/search/", {"image": SimpleUploadedFile("q.jpg", b"garbage", "image/jpeg")})
    html = response.content.decode()
    assert 'aria-invalid="true"' in html and 'aria-describedby="photo-help photo-error"' in html
    assert 'id="photo-error"' in html


def test_a_long_thin_image_is_refused_on_the_page_not_a_500(client, catalog):
    from PIL import Image

    response = client.post("/search/", {"image": SimpleUploadedFile("x.png", encode(Image.new("RGB", (1, 3000)), "PNG"),
                                                                    "image/png")})
    assert response.status_code == 400 and "too long and thin" in response.content.decode()
