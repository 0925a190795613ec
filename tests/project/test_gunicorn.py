"""The production server: gunicorn with gunicorn.conf.py, on a throw-away site (SQLite, embedded index, DEBUG off).

One server for the module (collectstatic and the model build take seconds); the last test stops it.
"""
from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fresh_process import BASE_DIR, clean_env

pytestmark = [
    pytest.mark.slow,  # builds the real CNN in the worker
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="gunicorn and /proc are Linux-only here"),
]
BOOT_TIMEOUT_S = 60
WARMED_UP = re.compile(r"visual search warmed up in [\d.]+ s \(pid (\d+)\)")


@dataclass
class Server:
    process: subprocess.Popen
    log_path: Path
    base: str
    worker_pid: int

    def log(self, *, containing: str = "", timeout_s: float = 10) -> str:
        """The log so far; with ``containing``, once it contains that (gunicorn logs a request after answering)."""
        deadline = time.monotonic() + timeout_s
        while containing not in (log := self.log_path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return log

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("gunicorn")
    env = clean_env({
        "DJANGO_SECRET_KEY": "test-only-insecure-key",
        "DJANGO_VAR_DIR": str(root / "var"),
        "DJANGO_MEDIA_ROOT": str(root / "media"),
        "VISUALSEARCH_INDEX_BACKEND": "embedded",
        "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    for name in ("DATABASE_URL", "ELASTICSEARCH_URL", "CACHE_URL"):  # SQLite and the in-process index, whatever CI says
        env.pop(name, None)
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *command, "-v", "0"], cwd=BASE_DIR, env=env, check=True,
                       capture_output=True, timeout=120)  # fmt: skip
    log_path = root / "gunicorn.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0"],
            cwd=BASE_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield _wait_until_serving(process, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_until_serving(process: subprocess.Popen, log_path: Path) -> Server:
    """The server once its worker has answered a request (port 0: the port is read back from gunicorn's log)."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}"
        log = log_path.read_text()
        listening = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log)
        booting = re.search(r"Booting worker with pid: (\d+)", log)
        if listening and booting:
            server = Server(process, log_path, listening.group(1), int(booting.group(1)))
            try:
                if server.get("/api/products/")[0] == 200:
                    return server
            except OSError:
                pass
        time.sleep(0.2)
    pytest.fail(f"gunicorn not serving after {BOOT_TIMEOUT_S} s:\n{log_path.read_text()}")


def _mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_worker_warms_up_before_its_first_request_and_the_master_holds_no_model(server):
    log = server.log(containing='"GET /api/products/')
    warm_ups = [(m.start(), int(m.group(1))) for m in WARMED_UP.finditer(log)]
    first_request = log.index('"GET /api/products/')
    assert [pid for _, pid in warm_ups] == [server.worker_pid], log  # once, in the worker, not on the request
    assert warm_ups[0][0] < first_request, log
    assert "onnxruntime" in _mapped_libraries(server.worker_pid)
    assert "onnxruntime" not in _mapped_libraries(server.process.pid)  # nothing native is forked


def _static_url(page: str, pattern: str) -> str:
    found = re.search(rf'/static/{pattern}', page)
    assert found, page
    return found.group(0)


@pytest.mark.parametrize(("page", "asset", "content_type"), [
    ("/admin/login/", r"admin/css/base\.[0-9a-f]{12}\.css", "text/css"),
    ("/api/docs/", r"drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.[0-9a-f]{12}\.js", "text/javascript"),
])  # fmt: skip
def test_pages_link_hashed_static_files_that_whitenoise_serves_compressed_for_a_year(server, page, asset,
                                                                                      content_type):
    status, _, html = server.get(page)
    assert status == 200
    status, headers, body = server.get(_static_url(html.decode(), asset), **{"Accept-Encoding": "gzip"})
    assert status == 200 and body
    assert headers["Content-Type"].startswith(content_type)
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"] and "max-age=315360000" in headers["Cache-Control"]


@pytest.mark.parametrize("upload", [b"this is not an image", b""])
def test_a_bad_upload_is_a_json_client_error(server, upload):
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + upload + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    connection = http.client.HTTPConnection(*server.base.removeprefix("http://").split(":"), timeout=30)
    try:
        connection.request("POST", "/api/search/", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        status, payload = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert 400 <= status < 500, payload
    assert payload["error"]["code"]


def test_sigterm_stops_the_server_cleanly(server):  # last: it stops the module's server
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=40) == 0
    log = server.log()  # complete: the server has exited
    assert f"Worker exiting (pid: {server.worker_pid})" in log and "Shutting down: Master" in log
    assert "Traceback" not in log, log
    assert not Path(f"/proc/{server.worker_pid}").exists()
