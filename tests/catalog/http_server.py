"""A local HTTP server with the behaviours an import meets in the wild: photos behind lying headers, redirects,
loops, 404s, huge and slow bodies. Started per test module on 127.0.0.1 (an internal address: tests allow-list it)."""
from __future__ import annotations

import http.server
import threading
import time
from urllib.parse import parse_qs, urlsplit

from tests.conftest import encode, scene


class Photos(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        Photos.hits.append(self.path)
        path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        if path.startswith("/photo/"):  # /photo/<seed>.jpg, served as text/html: the bytes decide, not the header
            return self._send(200, encode(scene(int(path.rsplit("/", 1)[1].split(".")[0]))), "text/html")
        if path == "/text-as-jpeg":
            return self._send(200, b"<html>not a photo</html>", "image/jpeg")
        if path == "/redirect":
            return self._send(302, b"", headers={"Location": query["to"][0]})
        if path == "/loop":
            return self._send(302, b"", headers={"Location": "/loop"})
        if path == "/declared-huge":
            return self._send(200, b"x" * 10, headers={"Content-Length": str(10**10)}, length=False)
        if path == "/endless":  # no Content-Length: streamed until the limit stops it
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\xff" * 65536)
            except OSError:
                return
        if path == "/drip":  # one byte every 0.2 s: never silent long enough for the read timeout
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                return
        if path == "/silent":
            time.sleep(3)
            return self._send(200, b"late")
        return self._send(404, b"not found")

    def _send(self, status: int, body: bytes, content_type="application/octet-stream", headers=None, length=True):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args):
        pass


class Server:
    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Photos)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.httpd.server_port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
