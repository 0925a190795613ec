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


def test_before_serving_waits_for_the_warm_up_and_the_first_request_starts_none(warm_ups):
    done, finished = warm_ups
    warmup.warm_up_before_serving()
    assert done == ["visualsearch-warmup"]  # finished on return
    finished.clear()
    request_started.send(sender=None)
    assert not finished.wait(0.2)


def test_before_serving_beats_while_waiting_and_stops_waiting_when_told(warm_ups, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(warmup, "warm_up", release.wait)  # a warm-up that lasts until released
    beats = []

    def heartbeat() -> bool:
        beats.append(1)
        return len(beats) < 3  # the worker is told to exit during its third beat

    warmup.warm_up_before_serving(heartbeat, interval_s=0.01)
    release.set()
    assert len(beats) == 3


def test_before_serving_does_nothing_when_turned_off(warm_ups, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "WARM_UP": False}
    done, finished = warm_ups
    warmup.warm_up_before_serving()
    request_started.send(sender=None)
    assert not finished.wait(0.2) and done == []
