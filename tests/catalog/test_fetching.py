from __future__ import annotations

import ipaddress
import socket
import time

import pytest

from catalog.fetching import Fetcher, FetchError, FetchPolicy, is_public

from .http_server import Server


@pytest.fixture(scope="module")
def server():
    running = Server()
    yield running
    running.stop()


def allowed(**limits) -> Fetcher:
    """The test server is on 127.0.0.1, an internal address: allow-listed explicitly, as a shop would."""
    return Fetcher(FetchPolicy(allowed_hosts=frozenset({"127.0.0.1"}), **limits))


def refusal(fetcher: Fetcher, url: str) -> str:
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(url)
    return caught.value.code


def test_a_photo_behind_a_lying_content_type_is_fetched(server):
    assert allowed().fetch(server.url("/photo/3.jpg"))[:2] == b"\xff\xd8"  # JPEG bytes, served as text/html


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/photo/1.jpg", "http://localhost:{port}/photo/1.jpg", "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/", "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0:{port}/", "http://224.0.0.1/", "http://100.64.0.1/",
    "http://[fd00::1]/", "http://[fe80::1]/", "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/",
    "http://2130706433:{port}/",  # 127.0.0.1 as one decimal number
])
def test_internal_addresses_are_refused_before_connecting(server, url):
    started = time.monotonic()
    assert refusal(Fetcher(), url.format(port=server.port)) in ("refused_address", "unreachable")
    assert time.monotonic() - started < 2


def test_every_internal_address_is_refused_with_refused_address(server):
    for url in (f"http://127.0.0.1:{server.port}/", "http://[::ffff:10.1.2.3]/", "http://169.254.169.254/"):
        assert refusal(Fetcher(), url) == "refused_address"


def test_the_address_is_checked_when_connecting_so_a_name_cannot_rebind(server, monkeypatch):
    """A name that resolves to a public address when checked and to an internal one when connecting: there is
    only one resolution, at connect time, and the socket goes to the address that was checked."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", "127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        if host == "photos.example":
            return real(next(answers), port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(FetchError):
        Fetcher(FetchPolicy(connect_timeout_s=0.5, total_timeout_s=1)).fetch(f"http://photos.example:{server.port}/")
    assert refusal(Fetcher(), f"http://photos.example:{server.port}/") == "refused_address"  # second answer


def test_redirects_are_checked_at_every_hop(server):
    to_other_internal = server.url(f"/redirect?to=http://127.0.0.2:{server.port}/photo/1.jpg")
    assert refusal(allowed(), to_other_internal) == "refused_address"
    assert refusal(allowed(), server.url("/redirect?to=file:///etc/passwd")) == "bad_url"
    assert allowed().fetch(server.url("/redirect?to=/photo/2.jpg"))[:2] == b"\xff\xd8"
    assert refusal(allowed(), server.url("/loop")) == "too_many_redirects"


@pytest.mark.parametrize("path, code", [
    ("/missing", "http_error"), ("/declared-huge", "too_large"), ("/endless", "too_large"),
])
def test_limits_and_errors(server, path, code):
    assert refusal(allowed(max_bytes=1_000_000), server.url(path)) == code


def test_a_slow_drip_is_cut_by_the_total_deadline(server):
    started = time.monotonic()
    assert refusal(allowed(total_timeout_s=1.0), server.url("/drip")) == "timeout"
    assert time.monotonic() - started < 3


def test_a_silent_server_is_cut_by_the_read_timeout(server):
    assert refusal(allowed(read_timeout_s=0.5), server.url("/silent")) == "timeout"


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "gopher://x/", "/etc/passwd", "http:///nohost",
                                 "http://user:secret@example.com/a.jpg", "not a url at all"])
def test_only_plain_http_urls(url):
    assert refusal(Fetcher(), url) == "bad_url"


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.1.1.1", False),
    ("::ffff:8.8.8.8", True), ("::ffff:192.168.0.1", False), ("64:ff9b::a00:1", False), ("2002:a00:1::", False),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo to 10.0.0.1
    ("239.1.1.1", False), ("ff02::1", False), ("198.18.0.1", False),
])
def test_is_public(address, public):
    assert is_public(ipaddress.ip_address(address)) is public
