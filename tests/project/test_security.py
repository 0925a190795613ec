"""Deployment checks: `check --deploy` clean with the documented production settings, CSP, admin login pauses."""
from __future__ import annotations

import pytest
from django.core.cache import cache

from tests.fresh_process import run_python

# The production environment the README documents (behind a TLS proxy), with a long random secret.
DOCUMENTED_PRODUCTION = {
    "DJANGO_SECRET_KEY": "x7Qm2vLr9Tz4Kp8Wn1Ys6Jd3Hb5Gc0Fa-long-random-production-secret",
    "DJANGO_ALLOWED_HOSTS": "shop.example.com", "DJANGO_CSRF_TRUSTED_ORIGINS": "https://shop.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto", "DJANGO_HTTPS": "1", "DJANGO_SECURE_SSL_REDIRECT": "1",
    "DJANGO_HSTS_SECONDS": "31536000", "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1", "DJANGO_HSTS_PRELOAD": "1",
    "DJANGO_ENV_FILE": "", "DJANGO_VAR_DIR": "/tmp/deploy-check-var",
}


def test_check_deploy_is_clean_with_the_documented_production_settings():
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'project.settings'; django.setup()\n"
            "from django.core.management import call_command; call_command('check', deploy=True, fail_level='WARNING')")
    result = run_python(code, DOCUMENTED_PRODUCTION)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy_but_the_api_docs_do_not(client):
    policy = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "Content-Security-Policy" not in client.get("/api/docs/").headers
    assert client.get("/").headers["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_health_checks_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/search/").status_code == 301


@pytest.mark.django_db
def test_admin_logins_pause_after_repeated_failures(client, django_user_model, settings):
    cache.clear()
    settings.ADMIN_LOGIN_FAILURES = 3
    django_user_model.objects.create_superuser("boss", "b@example.com", "right-password")

    def login(username, password, address="10.1.1.1"):
        return client.post("/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=address)

    assert [login("boss", "wrong").status_code for _ in range(3)] == [200, 200, 200]  # the form again, with an error
    paused = login("boss", "right-password")
    assert paused.status_code == 429 and int(paused["Retry-After"]) > 0  # even the right password waits
    assert login("someone-else", "x").status_code == 429  # the same address
    assert login("boss", "right-password", address="10.2.2.2").status_code == 429  # the same username elsewhere
    cache.clear()
    assert login("boss", "right-password").status_code == 302
