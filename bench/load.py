"""Load on the production stack: 16 concurrent shoppers searching while a staff process imports a catalog.

`python -m bench.load [--shoppers 16] [--seconds 60] [--import-photos 300]`

A throw-away site on MariaDB (database `test_catalog_load`, which the `catalog` user may create) and
Elasticsearch (a unique alias), served by gunicorn (gunicorn.conf.py, one worker, 4 threads), with the demo catalog
indexed. Shoppers POST ~1 MP JPEGs (new augmentations of the demo photos) to /api/search/ back to back for a
fixed time, over loopback, from this process (the client shares the 2 cores with the server: it is part of the
load). Meanwhile `manage.py import_catalog` adds `--import-photos` photos (local files, generated) in batches,
whose indexing runs inline after each batch commits, as it does for staff. Reported: searches/s, p50/p95/p99,
answers by status (any other than 200 is an error), the import's duration, the worker's memory. Then a short
phase checks throttling: one client over `VISUALSEARCH_THROTTLE_RATE` gets 429s with Retry-After.
The global-only path (`VISUALSEARCH_RECOGNITION=off`) is the default; `--recognition` turns the second stage on.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from .common import elasticsearch_url, log, percentile
from .e2e_search import post_search
from .es import delete_indexes, unique_prefix
from .site import Site

DATABASE = "test_catalog_load"
MYSQL = "mysql://catalog:catalog@127.0.0.1:3306"


def shopper_photos(count: int, seed: int = 3) -> list[bytes]:
    """~1 MP JPEGs: the demo's photos cropped, rotated, recoloured and enlarged (what a phone would send)."""
    from catalog.demo import DEMO_PRODUCTS, sample_path

    rng = random.Random(seed)
    sources = [Image.open(sample_path(p.files[0])).convert("RGB") for p in DEMO_PRODUCTS]
    photos = []
    for n in range(count):
        image = sources[n % len(sources)]
        w, h = image.size
        box = (rng.randint(0, w // 8), rng.randint(0, h // 8), w - rng.randint(0, w // 8), h - rng.randint(0, h // 8))
        image = image.crop(box).rotate(rng.uniform(-8, 8), expand=True, fillcolor=(240, 240, 240))
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2)).resize((1152, 864))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=88)
        photos.append(buffer.getvalue())
    return photos


def import_file(root: Path, photos: int) -> Path:
    """A CSV of ``photos`` products with one generated photo each (local files beside it)."""
    rng = np.random.default_rng(5)
    (root / "import").mkdir()
    lines = ["relation_id,title,category,price,stock,image"]
    for n in range(photos):
        pixels = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((640, 480), Image.Resampling.NEAREST).save(root / "import" / f"{n}.jpg")
        lines.append(f"load-{n},Imported {n},imported,{10 + n % 50}.00,{n % 7},{n}.jpg")
    (root / "import" / "shop.csv").write_text("\n".join(lines) + "\n")
    return root / "import" / "shop.csv"


def run_shoppers(base: str, photos: list[bytes], shoppers: int, seconds: float) -> dict:
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def shop(k: int) -> None:
        n = k
        while time.monotonic() < stop:
            try:
                elapsed, status, _ = post_search(base, photos[n % len(photos)], limit=10)
            except Exception:  # noqa: BLE001 — any failure to get an answer is an error
                elapsed, status = 0.0, 0
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)
            n += shoppers

    started = time.monotonic()
    threads = [threading.Thread(target=shop, args=(k,)) for k in range(shoppers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    ms = sorted(1000 * x for x in latencies)
    return {"searches": sum(statuses.values()), "wall_s": round(wall, 1),
            "searches_per_s": round(len(latencies) / wall, 1), "by_status": dict(statuses),
            "errors": sum(n for s, n in statuses.items() if s != 200),
            "p50_ms": round(percentile(ms, 50), 1), "p95_ms": round(percentile(ms, 95), 1),
            "p99_ms": round(percentile(ms, 99), 1)}


def throttle_check(site: Site, env: dict, photo: bytes) -> dict:
    """One client over a 20/min rate: the first 20 answer, the rest get 429 with Retry-After."""
    with site.serve({**env, "VISUALSEARCH_THROTTLE_RATE": "20/min"}, "throttle") as server:
        statuses = collections.Counter(post_search(server.base, photo, limit=5)[1] for _ in range(30))
    return {"rate": "20/min", "requests": 30, "by_status": dict(statuses)}


def run(shoppers: int, seconds: float, import_photos: int, recognition: bool) -> dict:
    es = elasticsearch_url()
    prefix = unique_prefix("load")
    env = {"DATABASE_URL": f"{MYSQL}/{DATABASE}", "ELASTICSEARCH_URL": es, "VISUALSEARCH_INDEX_BACKEND": "elasticsearch",
           "ELASTICSEARCH_INDEX_ALIAS": prefix, "VISUALSEARCH_RECOGNITION": "on" if recognition else "off",
           "GUNICORN_ACCESS_LOG": "", "VISUALSEARCH_THROTTLE_RATE": "1000000/min"}
    _mysql(f"DROP DATABASE IF EXISTS {DATABASE}; CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
    site = Site(Path(__import__("tempfile").mkdtemp(prefix="visualsearch-bench-load-")), base_env=env)
    try:
        site.migrate()
        site.manage("collectstatic", "--noinput", "-v", "0")
        site.manage("load_demo")
        photos = shopper_photos(64)
        csv_path = import_file(site.root, import_photos)
        with site.serve(env, "load") as server:
            for photo in photos[:4]:
                post_search(server.base, photo)  # warm-up
            log(f"load: {shoppers} shoppers for {seconds:.0f} s, importing {import_photos} photos meanwhile")
            importer = subprocess.Popen([sys.executable, "manage.py", "import_catalog", str(csv_path), "--batch", "50",
                                         "-v", "0"], cwd=Path(__file__).resolve().parents[1], env=site.env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            import_started, finished = time.monotonic(), {}
            waiter = threading.Thread(target=lambda: finished.update(
                output=importer.communicate(timeout=3600)[0], seconds=time.monotonic() - import_started))
            waiter.start()
            shopping = run_shoppers(server.base, photos, shoppers, seconds)
            waiter.join()
            import_output, import_seconds = finished["output"], finished["seconds"]
            memory = server.memory_mb()
        throttling = throttle_check(site, env, photos[0])
        return {"shoppers": shoppers, "recognition": recognition, "shopping": shopping,
                "import": {"photos": import_photos, "seconds": round(import_seconds, 1), "exit": importer.returncode,
                           "output": import_output.strip().splitlines()[-1:]},
                "worker_memory_mb": memory, "throttling": throttling}
    finally:
        site.remove()
        delete_indexes(es, prefix)
        _mysql(f"DROP DATABASE IF EXISTS {DATABASE}")


def _mysql(sql: str) -> None:
    subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-ucatalog", "-pcatalog", "-e", sql], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--import-photos", type=int, default=300)
    parser.add_argument("--recognition", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results/load.json"))
    args = parser.parse_args(argv)
    report = run(args.shoppers, args.seconds, args.import_photos, args.recognition)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
