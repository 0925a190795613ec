"""Search uploads are refused before anything parses the body: too big, without a length, or throttled."""
from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http.multipartparser import MultiPartParser
from django.test import Client
from rest_framework.throttling import SimpleRateThrottle

from tests.conftest import scene_jpeg

pytestmark = pytest.mark.django_db
THIRTY_MB = 30 * 1024 * 1024


@pytest.fixture
def parses(monkeypatch) -> dict[str, int]:
    """Counts multipart parses and upload temp files."""
    counts = {"parse": 0, "temp_file": 0}
    real_parse, real_new_file = MultiPartParser.parse, TemporaryFileUploadHandler.new_file

    def parse(self):
        counts["parse"] += 1
        return real_parse(self)

    def new_file(self, *args, **kwargs):
        counts["temp_file"] += 1
        return real_new_file(self, *args, **kwargs)

    monkeypatch.setattr(MultiPartParser, "parse", parse)
    monkeypatch.setattr(TemporaryFileUploadHandler, "new_file", new_file)
    return counts


@pytest.fixture
def browser() -> Client:
    """A client that, like a browser, is held to CSRF: the CSRF middleware reads request.POST."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def one_search_a_minute(monkeypatch):
    cache.clear()
    # DRF reads the rates into a class attribute at import time, so a settings override would not reach them.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"visual_search": "1/min"})
    yield
    cache.clear()


def big_upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("big.jpg", b"\xff" * THIRTY_MB, "image/jpeg")


def test_an_oversized_page_upload_is_refused_before_it_is_parsed(browser, parses):
    response = browser.post("/search/", {"image": big_upload()})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html") and b'role="alert"' in response.content
    assert parses == {"parse": 0, "temp_file": 0}


def test_an_oversized_api_upload_is_refused_before_it_is_parsed(client, parses):
    response = client.post("/api/search/", {"image": big_upload()})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert parses == {"parse": 0, "temp_file": 0}


@pytest.mark.parametrize("url, content_type", [("/search/", "text/html"), ("/api/search/", "application/json")])
def test_a_body_without_a_length_is_refused(client, parses, url, content_type):
    response = client.post(url, {"image": SimpleUploadedFile("q.jpg", scene_jpeg(1), "image/jpeg")},
                           CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked")  # fmt: skip
    assert response.status_code == 411 and response["Content-Type"].startswith(content_type)
    assert parses["parse"] == 0


def test_a_throttled_page_upload_is_refused_before_it_is_parsed(browser, catalog, parses, one_search_a_minute):
    token = str(browser.get("/search/").context["csrf_token"])  # showing the form is not a search

    def post():
        photo = SimpleUploadedFile("q.jpg", scene_jpeg(1), "image/jpeg")
        return browser.post("/search/", {"image": photo, "csrfmiddlewaretoken": token})

    assert post().status_code == 303 and parses["parse"] == 1
    refused = post()
    assert refused.status_code == 429 and parses["parse"] == 1
    assert b'role="alert"' in refused.content and int(refused["Retry-After"]) > 0


def test_other_pages_are_left_alone(client, catalog, parses):
    assert client.post("/admin/login/", {"username": "x", "password": "y"}).status_code == 200
    assert parses["parse"] == 1
