"""Hostile uploads against the production server: `python -m bench.fuzz [--cases 10000]`.

A throw-away site (SQLite, demo catalog, recognition on) served by gunicorn (gunicorn.conf.py, one worker, four
threads); bench.hostile's cases (truncations, bit flips, polyglots, splices, decompression bombs in every format
Pillow opens here, non-images, lying names and content types, absurd parameters and boxes) plus bodies over the
upload limit, sent by 4 concurrent clients. Reports counts by status code and kind, the slowest answers, the
worker's peak memory, and whether the server still answers a real search afterwards. Any answer >= 500 (or no
answer) is a failure: the exit status says so.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import log, multipart
from .hostile import cases, valid_image
from .site import Site

OVERSIZED_BODIES = 20
OVERSIZED_MB = 30  # over the 25 MiB upload limit: refused from the headers, before the body is read


def send(host: str, port: int, path: str, body: bytes, content_type: str, headers: dict | None = None,
         timeout: float = 120) -> tuple[int, float]:
    """POST and return (status, seconds). The body goes out in pieces while the answer is watched for, as a browser
    does: a server that refuses from the headers (413) answers before the body is sent, then closes."""
    started = time.perf_counter()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n").encode()
    status = 0  # no answer: a failure as bad as a 500
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            for start in range(0, len(body), 1 << 20):
                try:
                    sock.sendall(body[start : start + (1 << 20)])
                except OSError:
                    break  # the server stopped reading: its answer is waiting
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
            reply = sock.makefile("rb").readline(200)
            if reply.startswith(b"HTTP/1."):
                status = int(reply.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return status, time.perf_counter() - started


def csrf(host: str, port: int) -> dict:
    """The shopper page's CSRF cookie and token (hostile page posts must reach the view, not the CSRF check)."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.request("GET", "/search/")
    response = connection.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    connection.close()
    return {"cookie": cookie, "token": token}


def run(count: int, seed: int, concurrency: int) -> dict:
    site = Site.create("fuzz")
    try:
        log("fuzz: loading the demo catalog (model work, once)")
        site.manage("load_demo", VISUALSEARCH_RECOGNITION="on")
        with site.serve({"VISUALSEARCH_RECOGNITION": "on"}, "fuzz") as server:
            host, port = server.base.removeprefix("http://").split(":")
            page = csrf(host, int(port))
            requests = []
            for n, (kind, files, fields) in enumerate(cases(count, seed)):
                if n % 4:
                    requests.append((kind, "/api/search/", *multipart(files, fields), {}))
                else:  # the shopper page too, with its CSRF token
                    body, kind_type = multipart(files, {**fields, "csrfmiddlewaretoken": page["token"]})
                    requests.append((kind, "/search/", body, kind_type, {"Cookie": page["cookie"]}))
            huge = b"\xff\xd8" + b"\x00" * (OVERSIZED_MB * 2**20)
            requests += [("oversized_body", "/api/search/", *multipart({"image": ("big.jpg", huge, "image/jpeg")}, {}),
                          {}) for _ in range(OVERSIZED_BODIES)]
            memory_before = server.memory_mb()
            log(f"fuzz: {len(requests)} requests, {concurrency} at a time, to {server.base}")
            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                results = list(pool.map(lambda r: (r[0], r[1], *send(host, int(port), r[1], r[2], r[3], r[4])),
                                        requests))
            wall = time.perf_counter() - started
            memory_after = server.memory_mb()
            body, content_type = multipart({"image": ("ok.jpg", valid_image(__import__("random").Random(1), "JPEG"),
                                                      "image/jpeg")}, {})
            still_serving = send(host, int(port), "/api/search/", body, content_type)[0] == 200
        by_status = collections.Counter(status for _, _, status, _ in results)
        by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for kind, _, status, _ in results:
            by_kind[kind][status] += 1
        times = sorted(seconds for *_, seconds in results)
        slowest = sorted(results, key=lambda r: -r[3])[:5]
        return {
            "requests": len(results), "wall_s": round(wall, 1), "by_status": dict(sorted(by_status.items())),
            "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
            "failures_5xx_or_no_answer": sum(n for s, n in by_status.items() if s >= 500 or s == 0),
            "p50_ms": round(1000 * times[len(times) // 2], 1), "p99_ms": round(1000 * times[int(len(times) * 0.99)], 1),
            "max_ms": round(1000 * times[-1], 1),
            "slowest": [{"kind": k, "path": p, "status": s, "ms": round(1000 * t, 1)} for k, p, s, t in slowest],
            "worker_memory_before_mb": memory_before, "worker_memory_after_mb": memory_after,
            "still_serving": still_serving,
        }
    finally:
        site.remove()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz.json"))
    args = parser.parse_args(argv)
    report = run(args.cases, args.seed, args.concurrency)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if report["failures_5xx_or_no_answer"] or not report["still_serving"]:
        raise SystemExit("fuzz: FAILED (answers >= 500, no answer, or the server stopped serving)")


if __name__ == "__main__":
    main()
