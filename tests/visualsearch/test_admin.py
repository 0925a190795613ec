from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from catalog.models import IndexStatus, ProductImage
from tests.conftest import scene_jpeg

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_client):
    return admin_client


def run_action(client, model: str, action: str, ids):
    url = reverse(f"admin:catalog_{model}_changelist")
    return client.post(url, {"action": action, ACTION_CHECKBOX_NAME: [str(i) for i in ids]})


def test_find_similar_on_images_shows_results_in_the_admin(staff, catalog):
    photo = catalog[2].images.first()
    response = run_action(staff, "productimage", "find_similar_images", [photo.pk])
    assert response.status_code == 200
    html = response.content.decode()
    assert "Similar products" in html and "sku-2" in html


def test_find_similar_on_products(staff, catalog):
    response = run_action(staff, "product", "find_similar_products", [catalog[0].pk, catalog[1].pk])
    html = response.content.decode()
    assert response.status_code == 200 and "sku-0" in html and "sku-1" in html


def test_reindex_selected_fixes_a_failed_photo(staff, catalog):
    photo = catalog[0].images.first()
    ProductImage.objects.filter(pk=photo.pk).update(index_status=IndexStatus.FAILED, index_error="boom")
    response = run_action(staff, "productimage", "reindex_images", [photo.pk])
    assert response.status_code == 302
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.INDEXED and photo.index_error == ""


def test_changelists_and_forms_render(staff, catalog):
    for name in ["catalog_product_changelist", "catalog_productimage_changelist",
                 "visualsearch_imageembedding_changelist"]:
        assert staff.get(reverse(f"admin:{name}")).status_code == 200
    assert staff.get(reverse("admin:catalog_product_change", args=[catalog[0].pk])).status_code == 200
    filtered = staff.get(reverse("admin:catalog_productimage_changelist") + "?index_status__exact=indexed")
    assert filtered.status_code == 200


def test_adding_a_product_with_photos_in_the_admin_indexes_them(staff, django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {
        "relation_id": "new-1", "title": "New", "category": "bags", "price": "1.00", "is_active": "on",
        "images-TOTAL_FORMS": "2", "images-INITIAL_FORMS": "0", "images-MIN_NUM_FORMS": "0",
        "images-MAX_NUM_FORMS": "1000",
        "images-0-image": SimpleUploadedFile("a.jpg", scene_jpeg(40), "image/jpeg"), "images-0-position": "0",
        "images-1-image": SimpleUploadedFile("b.jpg", scene_jpeg(41), "image/jpeg"), "images-1-position": "1",
    }
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = staff.post(reverse("admin:catalog_product_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert len(callbacks) == 1
    statuses = set(ProductImage.objects.filter(product__relation_id="new-1").values_list("index_status", flat=True))
    assert statuses == {IndexStatus.INDEXED}


@pytest.fixture
def view_only_staff(client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_product", "view_productimage"]))
    client.force_login(user)
    return client


def test_view_only_staff_cannot_reindex(view_only_staff, catalog):
    photo = catalog[0].images.first()
    ProductImage.objects.filter(pk=photo.pk).update(index_status=IndexStatus.FAILED, index_error="boom")
    run_action(view_only_staff, "productimage", "reindex_images", [photo.pk])
    run_action(view_only_staff, "product", "reindex_products", [catalog[0].pk])
    photo.refresh_from_db()
    assert photo.index_status == IndexStatus.FAILED
    changelist = view_only_staff.get(reverse("admin:catalog_productimage_changelist")).content.decode()
    assert "find_similar_images" in changelist and "reindex_images" not in changelist


@pytest.mark.django_db(transaction=True)  # the background thread reads what the request committed
def test_a_large_selection_is_indexed_in_the_background_not_in_the_web_request(staff, catalog, monkeypatch):
    import threading

    from visualsearch import tasks

    monkeypatch.setattr(tasks, "MAX_INLINE_IMAGES", 3)
    real_run_sync, threads = tasks.run_sync, set()
    monkeypatch.setattr(tasks, "run_sync", lambda **kw: threads.add(threading.current_thread().name) or real_run_sync(**kw))
    release = threading.Event()
    tasks._background.submit(release.wait)  # hold the worker: the request must not wait for it
    photos = list(ProductImage.objects.values_list("pk", flat=True))
    response = run_action(staff, "productimage", "reindex_images", photos)
    assert response.status_code == 302 and not threads
    assert set(ProductImage.objects.values_list("index_status", flat=True)) == {IndexStatus.PENDING}
    messages = [str(m) for m in staff.get(response.url).context["messages"]]
    assert any("queued" in m and "?indexed=no" in m for m in messages)
    release.set()
    tasks._background.submit(lambda: None).result(timeout=120)  # the queue has drained
    assert set(ProductImage.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}
    assert all(name.startswith("visualsearch-reindex") for name in threads)


def test_find_similar_shows_the_nearest_other_products_whatever_their_score(staff, catalog, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "SEARCH_THRESHOLD": 0.999}  # would hide every product
    photo = catalog[2].images.first()
    response = run_action(staff, "productimage", "find_similar_images", [photo.pk])
    [(image, result)] = response.context["groups"]
    products = [match.product.relation_id for match in result.matches]
    assert sorted(products) == ["sku-0", "sku-1", "sku-3", "sku-4"]  # never its own product; sku-5 is inactive
    assert 'class="vs-card"' in response.content.decode()


def test_product_changelist_shows_thumbnails_and_an_empty_inline_row_is_not_pending(staff, catalog):
    changelist = staff.get(reverse("admin:catalog_product_changelist")).content.decode()
    assert changelist.count("<img src=") >= 6
    form = staff.get(reverse("admin:catalog_product_change", args=[catalog[0].pk])).content.decode()
    assert form.count("Indexed") >= 2 and "Pending" not in form  # two indexed photos, one empty extra row


def test_photos_can_be_filtered_to_those_not_indexed(staff, catalog):
    photo = catalog[0].images.first()
    ProductImage.objects.filter(pk=photo.pk).update(index_status=IndexStatus.FAILED, index_error="boom")
    response = staff.get(reverse("admin:catalog_productimage_changelist") + "?indexed=no")
    assert [p.pk for p in response.context["cl"].result_list] == [photo.pk]
    assert "efficientnet" in staff.get(reverse("admin:catalog_productimage_changelist")).content.decode()


def _add_product(staff, relation_id: str, *photos: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {"relation_id": relation_id, "title": relation_id.title(), "category": "bags", "is_active": "on",
            "images-TOTAL_FORMS": str(len(photos)), "images-INITIAL_FORMS": "0", "images-MIN_NUM_FORMS": "0",
            "images-MAX_NUM_FORMS": "1000"}
    for n, photo in enumerate(photos):
        data[f"images-{n}-image"] = SimpleUploadedFile(f"{n}.jpg", photo, "image/jpeg")
        data[f"images-{n}-position"] = str(n)
    return staff.post(reverse("admin:catalog_product_add"), data, follow=True)


def test_saving_another_products_photo_warns_with_a_link_but_saves(staff, catalog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _add_product(staff, "copycat", scene_jpeg(3))  # sku-3's photo, filed under a new product
    assert response.status_code == 200 and ProductImage.objects.filter(product__relation_id="copycat").exists()
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert len(warnings) == 1 and "Product" in warnings[0]
    assert reverse("admin:catalog_product_change", args=[catalog[3].pk]) in warnings[0]


def test_a_new_photo_unlike_any_other_saves_without_a_warning(staff, catalog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _add_product(staff, "original", scene_jpeg(321), scene_jpeg(322))
    assert not [m for m in response.context["messages"] if m.level_tag == "warning"]
