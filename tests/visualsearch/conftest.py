from __future__ import annotations

import pytest

from tests.conftest import scene_jpeg


@pytest.fixture
def catalog(make_product, make_image, django_capture_on_commit_callbacks):
    """Six indexed products with two photos each (seed s and s+100 look nothing alike), one of them inactive."""
    products = []
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(6):
            product = make_product(relation_id=f"sku-{n}", category="shoes" if n % 2 else "bags",
                                   is_active=n != 5)
            make_image(product, seed=n)
            make_image(product, seed=n + 100)
            products.append(product)
    from visualsearch.registry import get_index

    get_index().refresh()
    return products


@pytest.fixture
def query_jpeg():
    return scene_jpeg
