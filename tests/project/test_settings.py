"""Settings read from the environment: production fails fast, DEBUG stays local, HTTPS behind a proxy."""
from __future__ import annotations

import base64
from unittest import mock

import pytest
from rest_framework.test import APIClient

from tests.fresh_process import load_settings, run_python

PRODUCTION = {"DJANGO_SECRET_KEY": "a-real-secret", "DJANGO_ALLOWED_HOSTS": "shop.example.com"}


def import_error(env: dict[str, str]) -> str:
    """stderr of a settings import that must fail."""
    result = run_python("import project.settings", env)
    assert result.returncode != 0, "the settings imported"
    return result.stderr


def test_production_without_a_secret_fails_fast_with_a_clear_message():
    stderr = import_error({"DJANGO_ALLOWED_HOSTS": "shop.example.com"})
    assert "ImproperlyConfigured" in stderr and "DJANGO_SECRET_KEY" in stderr


def test_an_empty_secret_is_no_secret():
    stderr = import_error({**PRODUCTION, "DJANGO_SECRET_KEY": ""})
    assert "DJANGO_SECRET_KEY" in stderr


def test_debug_is_refused_for_public_hosts():
    stderr = import_error({**PRODUCTION, "DJANGO_DEBUG": "1"})
    assert "ImproperlyConfigured" in stderr and "DJANGO_DEBUG" in stderr and "shop.example.com" in stderr


def test_debug_is_fine_on_local_hosts_without_a_secret():
    values = load_settings({"DJANGO_DEBUG": "1"}, "DEBUG", "ALLOWED_HOSTS", "SECRET_KEY")
    assert values["DEBUG"] is True and values["SECRET_KEY"]


def test_the_env_file_is_read_unless_disabled(tmp_path):
    env_file = tmp_path / "dev.env"
    env_file.write_text("DJANGO_DEBUG=1\n")
    assert load_settings({"DJANGO_ENV_FILE": str(env_file)}, "DEBUG") == {"DEBUG": True}
    assert load_settings(PRODUCTION, "DEBUG") == {"DEBUG": False}


def test_media_is_served_by_django_only_in_debug_unless_asked():
    assert load_settings(PRODUCTION, "SERVE_MEDIA") == {"SERVE_MEDIA": False}
    assert load_settings({"DJANGO_DEBUG": "1"}, "SERVE_MEDIA") == {"SERVE_MEDIA": True}
    assert load_settings({**PRODUCTION, "DJANGO_SERVE_MEDIA": "1"}, "SERVE_MEDIA") == {"SERVE_MEDIA": True}


HTTPS_NAMES = ("SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS")


def test_https_settings_are_off_by_default():
    values = load_settings(PRODUCTION, *HTTPS_NAMES)
    assert values == {"SECURE_PROXY_SSL_HEADER": None, "SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False,
                      "SECURE_HSTS_SECONDS": 0}  # fmt: skip


def test_https_turns_on_secure_cookies_and_hsts():
    values = load_settings({**PRODUCTION, "DJANGO_HTTPS": "1"}, *HTTPS_NAMES)
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"] and values["SECURE_HSTS_SECONDS"] > 0


@pytest.fixture
def photo(make_image, django_capture_on_commit_callbacks):
    """An indexed photo of an active product, with another product to find."""
    with django_capture_on_commit_callbacks(execute=True):
        photo = make_image(seed=1)
        make_image(seed=2)
    from visualsearch.registry import get_index

    get_index().refresh()
    return photo


def search(photo, **headers):
    return APIClient().post("/api/search/", {"image_id": photo.pk, "threshold": -1}, format="json", **headers)


def test_search_api_links_are_https_behind_a_tls_proxy(settings, photo):
    header = load_settings({**PRODUCTION, "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"},
                           "SECURE_PROXY_SSL_HEADER")["SECURE_PROXY_SSL_HEADER"]  # fmt: skip
    settings.SECURE_PROXY_SSL_HEADER = tuple(header)
    response = search(photo, HTTP_HOST="testserver", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200, response.content
    first = response.json()["results"][0]
    assert first["product"]["url"].startswith("https://testserver/")
    assert first["matched_image"]["url"].startswith("https://testserver/media/")


def test_basic_auth_guesses_cost_no_password_hash_and_are_throttled(photo, monkeypatch):
    from django.contrib.auth.backends import ModelBackend
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    # DRF reads the rates into a class attribute at import time, so a settings override would not reach them.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"visual_search": "2/min"})
    guess = "Basic " + base64.b64encode(b"admin:guess").decode()
    with mock.patch.object(ModelBackend, "authenticate", autospec=True, return_value=None) as authenticate:
        statuses = [search(photo, HTTP_AUTHORIZATION=guess).status_code for _ in range(3)]
    cache.clear()
    assert authenticate.call_count == 0
    assert statuses == [200, 200, 429]

