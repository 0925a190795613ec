from __future__ import annotations

import pytest

from catalog import views

pytestmark = pytest.mark.django_db


def test_home_page_lists_browsable_products_with_category_links(client, make_product):
    make_product(title="Red boot", category="shoes")
    make_product(title="Hidden boot", category="shoes", is_active=False)
    make_product(title="Tote", category="bags")
    page = client.get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Red boot" in html and "Tote" in html and "Hidden boot" not in html
    assert page.context["categories"] == ["bags", "shoes"]
    shoes = client.get("/", {"category": "shoes"}).content.decode()
    assert "Red boot" in shoes and "Tote" not in shoes


def test_home_page_pages_through_the_catalog(client, make_product, monkeypatch):
    monkeypatch.setattr(views, "PRODUCTS_PER_PAGE", 2)
    for n in range(5):
        make_product(title=f"Item {n}")
    assert [p.title for p in client.get("/").context["page"]] == ["Item 0", "Item 1"]
    last = client.get("/", {"page": 3})
    assert [p.title for p in last.context["page"]] == ["Item 4"] and 'rel="prev"' in last.content.decode()
    assert [p.title for p in client.get("/", {"page": "junk"}).context["page"]] == ["Item 0", "Item 1"]


def test_an_unknown_category_says_so(client, make_product):
    make_product(category="shoes")
    response = client.get("/", {"category": "<script>"})
    assert response.status_code == 404 and "no category called" in response.content.decode()
    assert "<script>" not in response.content.decode()  # escaped


def test_product_page_shows_stock(client, make_product):
    product = make_product(stock=0)
    assert "Out of stock" in client.get(product.get_absolute_url()).content.decode()
