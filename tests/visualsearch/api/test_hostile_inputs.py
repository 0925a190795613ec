"""The short version of the fuzz run (`python -m bench.fuzz`, 10 000 cases against gunicorn): hostile uploads and
parameters through the API and the shopper page never get a 500, and the API always answers in JSON."""
from __future__ import annotations

import io

import pytest
from rest_framework.test import APIClient

from bench.hostile import cases

pytestmark = pytest.mark.django_db
CASES = list(cases(160, seed=7))


@pytest.fixture(autouse=True)
def fresh_throttle():
    """220 searches in a row would trip the throttle (and leave later tests throttled)."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _files(files: dict) -> dict:
    out = {}
    for field, (name, data, _) in files.items():
        upload = io.BytesIO(data)
        upload.name = name
        out[field] = upload
    return out


@pytest.mark.parametrize("kind, files, fields", CASES, ids=[f"{n}-{c[0]}" for n, c in enumerate(CASES)])
def test_the_api_answers_hostile_input_below_500_in_json(catalog, kind, files, fields):
    response = APIClient().post("/api/search/", {**fields, **_files(files)}, format="multipart")
    assert response.status_code < 500, (kind, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


@pytest.mark.parametrize("kind, files, fields", CASES[:60], ids=[f"{n}-{c[0]}" for n, c in enumerate(CASES[:60])])
def test_the_shopper_page_answers_hostile_input_below_500(client, catalog, kind, files, fields):
    response = client.post("/search/", {**fields, **_files(files)})
    assert response.status_code < 500, (kind, response.content[:300])
