"""Test settings: the project's own, with a throw-away secret so `pytest` runs on a fresh clone without a `.env`.

Only the secret is defaulted; everything else (DATABASE_URL, ELASTICSEARCH_URL, ...) comes from the environment,
which is how CI switches configurations. pytest-django runs tests with DEBUG off whatever the environment says,
where the manifest storage needs a `collectstatic` manifest for every page: tests use plain static storage
instead (tests/project/test_gunicorn.py serves the real one under gunicorn).
"""
import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-insecure-key")

from project.settings import *  # noqa: E402,F401,F403

# Unit tests never publish to a real broker. CI's environment names one (scripts/services.sh env) for the worker
# tests, which use it explicitly (tests/visualsearch/test_celery_worker.py); Celery would read the variable over
# these settings, so it is moved aside.
os.environ.setdefault("TEST_CELERY_BROKER_URL", os.environ.pop("CELERY_BROKER_URL", ""))
CELERY_BROKER_URL = "memory://"

STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
