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


def test_a_large_selection_is_not_indexed_in_the_web_request(staff, catalog, monkeypatch):
    from visualsearch import tasks

    monkeypatch.setattr(tasks, "MAX_INLINE_IMAGES", 3)
    monkeypatch.setattr(tasks, "run_sync", lambda **kwargs: pytest.fail("indexed inside the request"))
    photos = list(ProductImage.objects.values_list("pk", flat=True))
    response = run_action(staff, "productimage", "reindex_images", photos)
    assert response.status_code == 302
    assert set(ProductImage.objects.values_list("index_status", flat=True)) == {IndexStatus.PENDING}
    messages = [str(m) for m in staff.get(response.url).context["messages"]]
    assert any("reindex --missing" in m for m in messages)
