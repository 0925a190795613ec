"""System checks turn configuration mistakes into start-up errors with an id."""
from __future__ import annotations

import pytest

from visualsearch.checks import check_visualsearch_settings


def error_ids() -> set[str]:
    return {error.id for error in check_visualsearch_settings()}


@pytest.fixture
def celery_runner(settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "TASK_RUNNER": "celery"}
    settings.CELERY_TASK_ALWAYS_EAGER = False
    return settings


def test_the_default_settings_pass():
    assert error_ids() == set()


def test_celery_with_the_in_memory_broker_is_an_error(celery_runner):
    # memory:// lives inside the publishing process: no worker ever sees the work, and nothing says so.
    celery_runner.CELERY_BROKER_URL = "memory://"
    assert "visualsearch.E005" in error_ids()


@pytest.mark.parametrize("broker, eager", [("redis://127.0.0.1:6379/0", False), ("memory://", True)])
def test_celery_with_a_real_broker_or_eager_tasks_passes(celery_runner, broker, eager):
    celery_runner.CELERY_BROKER_URL, celery_runner.CELERY_TASK_ALWAYS_EAGER = broker, eager
    assert error_ids() == set()
