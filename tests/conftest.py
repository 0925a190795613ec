"""Shared fixtures: a temporary MEDIA_ROOT, generated photos, catalog factories, a fresh index per test."""
from __future__ import annotations

import io
import os
import random
import subprocess
import uuid
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from catalog.models import Product, ProductImage
from tests.services import delete_indexes, uses_elasticsearch


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that timed out (pytest.ini's `timeout`) reports what the Elasticsearch server was doing at that
    moment: by the end of the run the task that hung it may be long gone."""
    report = (yield).get_result()
    if report.failed and call.excinfo and "Timeout" in str(call.excinfo.value) and os.environ.get("ELASTICSEARCH_URL"):
        script = Path(__file__).resolve().parent.parent / "scripts" / "services.sh"
        run = subprocess.run(["bash", str(script), "diagnose", "elasticsearch"], capture_output=True, text=True,
                             timeout=120, check=False)
        report.sections.append(("Elasticsearch when the test timed out", run.stdout + run.stderr))


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fresh_index(settings):
    """Each test starts with an empty index (extractors stay loaded: building a CNN is slow).

    In-process: a new instance. Elasticsearch (production configuration): a unique alias prefix per test, and its
    indexes deleted afterwards, because the database rolls back between tests but the server keeps everything.
    """
    from visualsearch.registry import indexes

    es_prefix = None
    if uses_elasticsearch():
        es_prefix = f"test-{uuid.uuid4().hex[:12]}"
        config = settings.VISUALSEARCH_INDEXES["default"]
        settings.VISUALSEARCH_INDEXES = {"default": {**config, "OPTIONS": {**config["OPTIONS"], "alias": es_prefix}}}
    indexes.reset()
    yield
    indexes.reset()
    if es_prefix:
        from elasticsearch import Elasticsearch

        with Elasticsearch(config["OPTIONS"]["hosts"]) as client:
            delete_indexes(client, f"{es_prefix}__*")


def indexed_ids() -> set[int]:
    """Photo ids in the index, after making every write visible (Elasticsearch refreshes about once a second)."""
    from visualsearch.registry import get_index

    index = get_index()
    index.refresh()
    return index.image_ids()


def scene(seed: int, size: tuple[int, int] = (256, 256)) -> Image.Image:
    """A synthetic 'product photo': random coloured shapes on a random background, distinct per seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(12):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        box = (x0, y0, x0 + rng.randrange(20, w // 2), y0 + rng.randrange(20, h // 2))
        colour = tuple(rng.randrange(256) for _ in range(3))
        getattr(draw, rng.choice(["ellipse", "rectangle"]))(box, fill=colour)
        draw.line((rng.randrange(w), rng.randrange(h), rng.randrange(w), rng.randrange(h)), fill=colour, width=6)
    return image


def another_view(image: Image.Image) -> Image.Image:
    """The same object photographed again: slightly cropped, rescaled and brighter."""
    w, h = image.size
    cropped = image.crop((w // 16, h // 16, w - w // 20, h - h // 12)).resize((w + 40, h + 20))
    return cropped.point(lambda v: min(255, int(v * 1.08)))


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def scene_jpeg(seed: int, **kwargs) -> bytes:
    return encode(scene(seed, **kwargs))


@pytest.fixture
def make_product(db):
    counter = iter(range(10**6))

    def make(**fields) -> Product:
        n = next(counter)
        defaults = {"relation_id": f"rel-{n}", "title": f"Product {n}", "category": "misc", "price": "9.99"}
        return Product.objects.create(**{**defaults, **fields})

    return make


@pytest.fixture
def make_image(db, make_product):
    def make(product: Product | None = None, *, seed: int = 0, data: bytes | None = None, name="photo.jpg"):
        product = product or make_product()
        photo = ProductImage(product=product)
        photo.image.save(name, ContentFile(data if data is not None else scene_jpeg(seed)), save=False)
        photo.save()
        return photo

    return make
