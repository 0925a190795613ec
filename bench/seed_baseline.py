"""The seed article's indexing pipeline, reproduced faithfully here only, against our `reindex` on the same photos.

Seed (:mod:`bench.seed_pipeline`, its own process), per photo: ``keras.utils.load_img(path, target_size=(224,
224))`` → ``img_to_array`` → ``expand_dims`` → ``preprocess_input`` → ``model.predict(x)`` (one image) with Keras
``VGG16(include_top=False, pooling="max")`` → L2-normalise → ``es.index(..., refresh=True)`` (one document,
refreshed every time; 3 shards as in the seed, no replica on one node). Ours: ``manage.py reindex`` on a fresh
site with the same photos, VGG16 + Elasticsearch, and the default EfficientNet-Lite0 + Elasticsearch.

ImageNet VGG16 weights cannot be downloaded on this machine, so both VGG16 runs use random weights: same
architecture, same compute. Both sides are timed with the model already built (each in its own process);
process start-up (imports, model build) is reported apart.

    .venv/bin/python -m bench.seed_baseline [--images 150]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import dataset
from .common import (elasticsearch_url, elasticsearch_version, log, machine_info, print_tables, ratio,
                     table, times, write_json)  # fmt: skip
from .es import delete_indexes, unique_prefix
from .site import Site, run_command

NAME = "seed_baseline"


def run_seed(site: Site, manifest: Path, es_url: str, prefix: str) -> dict[str, Any]:
    """The seed's loop (bench.seed_pipeline) in its own process; start-up = process wall time − loop time."""
    out = site.root / "seed.json"
    command = [sys.executable, "-m", "bench.seed_pipeline", "--manifest", str(manifest), "--es-url", es_url,
               "--index", f"{prefix}-seed", "--out", str(out)]  # fmt: skip
    started = time.perf_counter()
    run_command(command, {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - started
    result = json.loads(out.read_text())
    result["process_wall_s"] = wall
    return result


def run_ours(site: Site, manifest: Path, es_url: str, prefix: str) -> dict[str, dict[str, Any]]:
    site.job("populate", "--manifest", str(manifest))
    es = {"ELASTICSEARCH_URL": es_url, "ELASTICSEARCH_INDEX_ALIAS": f"{prefix}-ours", "ELASTICSEARCH_TIMEOUT": "60"}
    log("seed: our reindex, VGG16 (random weights) + Elasticsearch")
    vgg = site.job("reindex", VISUALSEARCH_EXTRACTOR="vgg16", VISUALSEARCH_WEIGHTS="random", **es)
    log("seed: our reindex, EfficientNet-Lite0 + Elasticsearch")
    return {"vgg16": vgg, "efficientnet_lite0": site.job("reindex", **es)}


def tables(seed: dict[str, Any], ours: dict[str, dict[str, Any]], n: int) -> list[str]:
    seed_rate = n / seed["seconds"]
    rows = [["seed: load_img → predict(1) → es.index(refresh=True), VGG16", n, seed["seconds"], seed_rate,
             times(1.0), seed["process_wall_s"] - seed["seconds"]]]  # fmt: skip
    labels = {"vgg16": "ours: reindex, VGG16 + Elasticsearch", "efficientnet_lite0":
              "ours: reindex, EfficientNet-Lite0 (default) + Elasticsearch"}  # fmt: skip
    for key, r in ours.items():
        rate = r["embeddings"] / r["seconds"]
        rows.append([labels[key], r["embeddings"], r["seconds"], rate, times(ratio(rate, seed_rate)),
                     r["process_wall_s"] - r["seconds"]])  # fmt: skip
    main = table("Seed pipeline vs ours (same photos, ~1 MP JPEGs; VGG16 with random weights)",
                 ["pipeline", "photos", "seconds", "images/s", "vs seed", "process start-up + exit s"], rows)
    phase_rows = [["seed", name, s, 1000 * s / n] for name, s in seed["phases_s"].items()]
    for key, r in ours.items():
        phase_rows += [[f"ours {key}", name, s, 1000 * s / n] for name, s in r["phases_s"].items()]
    return [main, table("Where the time goes", ["pipeline", "phase", "seconds", "ms/image"], phase_rows)]


def run(*, images: int) -> dict[str, Any]:
    es_url = elasticsearch_url()
    if not elasticsearch_version(es_url):
        raise SystemExit(f"seed_baseline needs Elasticsearch at {es_url} (bash scripts/services.sh start)")
    photos = dataset.photos(images)
    prefix = unique_prefix("seed")
    site = Site.create("seed")
    try:
        manifest = site.root / "manifest.json"
        manifest.write_text(json.dumps([p.__dict__ for p in photos]))
        log(f"seed: the seed's pipeline on {images} photos")
        seed = run_seed(site, manifest, es_url, prefix)
        ours = run_ours(site, manifest, es_url, prefix)
    finally:
        delete_indexes(es_url, prefix)
        site.remove()
    return {"benchmark": NAME, "machine": machine_info(es_url), "config": {"images": images,
            "weights": "random (ImageNet VGG16 weights cannot be downloaded here; same compute)"},
            "seed": seed, "ours": ours, "tables": tables(seed, ours, images)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=150, help="photos (default 150; VGG16 runs ~7 images/s)")
    args = parser.parse_args(argv)
    payload = run(images=args.images)
    print_tables(payload["tables"])
    print(f"\nwritten {write_json(NAME, payload)}")


if __name__ == "__main__":
    main()
