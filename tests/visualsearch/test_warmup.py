"""The warm-up runs in each serving process, on its first request, not when the application is imported."""
from __future__ import annotations

import threading

import pytest
from django.core.signals import request_started

from visualsearch import warmup

pytestmark = pytest.mark.django_db  # request_started also runs Django's close_old_connections

@pytest.fixture
def warm_ups(monkeypatch):
    """Record warm-ups instead of building the CNN; disconnect the receiver afterwards."""
    done: list[str] = []
    finished = threading.Event()

    def fake() -> None:
        done.append(threading.current_thread().name)
        finished.set()

    monkeypatch.setattr(warmup, "warm_up", fake)
    monkeypatch.setattr(warmup, "_started_in", None)
    warmup.warm_up_on_first_request()
    yield done, finished
    request_started.disconnect(dispatch_uid=warmup.DISPATCH_UID)


def test_the_first_request_starts_one_warm_up_in_the_background(warm_ups):
    done, finished = warm_ups
    request_started.send(sender=None)
    request_started.send(sender=None)
    assert finished.wait(10)
    assert done == ["visualsearch-warmup"]


def test_a_forked_worker_warms_up_again(warm_ups, monkeypatch):
    done, finished = warm_ups
    request_started.send(sender=None)
    assert finished.wait(10)
    finished.clear()
    monkeypatch.setattr(warmup.os, "getpid", lambda: -1)  # as seen from a child forked after the first warm-up
    request_started.send(sender=None)
    assert finished.wait(10)
    assert len(done) == 2


def test_no_warm_up_when_turned_off(warm_ups, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "WARM_UP": False}
    done, finished = warm_ups
    request_started.send(sender=None)
    assert not finished.wait(0.2)
