"""The seed article's indexing pipeline, reproduced faithfully here only, against our `reindex` on the same photos.

Seed, per photo: ``keras.utils.load_img(path, target_size=(224, 224))`` → ``img_to_array`` → ``expand_dims`` →
``preprocess_input`` → ``model.predict(x)`` (one image) with Keras ``VGG16(include_top=False, pooling="max")`` →
L2-normalise → ``es.index(..., refresh=True)`` (one document, refreshed every time; 3 shards as in the seed,
no replica on one node). Ours: ``manage.py reindex`` on a fresh site with the same photos, VGG16 + Elasticsearch,
and the default EfficientNet-Lite0 + Elasticsearch.

ImageNet VGG16 weights cannot be downloaded on this machine, so both VGG16 runs use random weights: same
architecture, same compute. Both sides are timed with the model already built; start-up is reported apart.

    .venv/bin/python -m bench.seed_baseline [--images 150]
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from . import dataset
from .common import (elasticsearch_url, elasticsearch_version, log, machine_info, print_tables, quiet_tensorflow,
                     ratio, table, timed, times, write_json)  # fmt: skip
from .dataset import Photo
from .es import client, delete_indexes, unique_prefix
from .site import Site

NAME = "seed_baseline"
SEED_SHARDS = 3  # the seed's cluster used 3 shards and 1 replica; a replica cannot be allocated on one node


def _seed_index(es, name: str) -> dict[str, Any]:
    """The seed's index: a 512-d dense_vector (cosine), Elasticsearch's default index options for it."""
    es.indices.create(
        index=name,
        settings={"number_of_shards": SEED_SHARDS, "number_of_replicas": 0},
        mappings={"properties": {"relation_id": {"type": "keyword"}, "image_path": {"type": "keyword"},
                                 "vector": {"type": "dense_vector", "dims": 512, "index": True,
                                            "similarity": "cosine"}}},
    )  # fmt: skip
    return es.indices.get_mapping(index=name)[name]["mappings"]["properties"]["vector"]


def run_seed(photos: list[Photo], es_url: str, prefix: str) -> dict[str, Any]:
    started = time.perf_counter()
    quiet_tensorflow()
    import keras
    from keras.applications.vgg16 import VGG16, preprocess_input

    model = VGG16(include_top=False, weights=None, pooling="max")  # weights="imagenet" in the seed: see module doc
    es = client(es_url)
    index = f"{prefix}-seed"
    mapping = _seed_index(es, index)
    model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)  # trace predict once, as a warm process has
    start_up_s = time.perf_counter() - started
    phases: dict[str, float] = {}
    started = time.perf_counter()
    for i, photo in enumerate(photos):
        with timed(phases, "load_img + img_to_array + preprocess_input"):
            image = keras.utils.load_img(photo.path, target_size=(224, 224))
            x = preprocess_input(np.expand_dims(keras.utils.img_to_array(image), axis=0))
        with timed(phases, "model.predict (one image)"):
            feature = model.predict(x, verbose=0)[0]
        with timed(phases, "normalise + es.index(refresh=True)"):
            vector = feature / np.linalg.norm(feature)
            document = {"relation_id": f"bench-{i // 4:06d}", "image_path": photo.path, "vector": vector.tolist()}
            es.index(index=index, id=str(i), document=document, refresh=True)
    seconds = time.perf_counter() - started
    count = es.count(index=index)["count"]
    es.close()
    return {"seconds": seconds, "start_up_s": start_up_s, "phases_s": phases, "indexed": count,
            "vector_mapping": mapping}  # fmt: skip


def run_ours(photos: list[Photo], es_url: str, prefix: str) -> dict[str, dict[str, Any]]:
    site = Site.create("seed-ours")
    try:
        manifest = site.root / "manifest.json"
        manifest.write_text(json.dumps([p.__dict__ for p in photos]))
        site.job("populate", "--manifest", str(manifest))
        es = {"ELASTICSEARCH_URL": es_url, "ELASTICSEARCH_INDEX_ALIAS": f"{prefix}-ours", "ELASTICSEARCH_TIMEOUT": "60"}
        log("seed: our reindex, VGG16 (random weights) + Elasticsearch")
        vgg = site.job("reindex", VISUALSEARCH_EXTRACTOR="vgg16", VISUALSEARCH_WEIGHTS="random", **es)
        log("seed: our reindex, EfficientNet-Lite0 + Elasticsearch")
        efficientnet = site.job("reindex", **es)
    finally:
        site.remove()
    return {"vgg16": vgg, "efficientnet_lite0": efficientnet}


def tables(seed: dict[str, Any], ours: dict[str, dict[str, Any]], n: int) -> list[str]:
    seed_rate = n / seed["seconds"]
    rows = [["seed: load_img → predict(1) → es.index(refresh=True), VGG16", n, seed["seconds"], seed_rate,
             times(1.0), seed["start_up_s"]]]  # fmt: skip
    labels = {"vgg16": "ours: reindex, VGG16 + Elasticsearch", "efficientnet_lite0":
              "ours: reindex, EfficientNet-Lite0 (default) + Elasticsearch"}  # fmt: skip
    for key, r in ours.items():
        rate = r["embeddings"] / r["seconds"]
        rows.append([labels[key], r["embeddings"], r["seconds"], rate, times(ratio(rate, seed_rate)),
                     r["process_wall_s"] - r["seconds"]])  # fmt: skip
    main = table("Seed pipeline vs ours (same photos, ~1 MP JPEGs; VGG16 with random weights)",
                 ["pipeline", "photos", "seconds", "images/s", "vs seed", "start-up s (not in seconds)"], rows)
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
    try:
        log(f"seed: the seed's pipeline on {images} photos")
        seed = run_seed(photos, es_url, prefix)
        ours = run_ours(photos, es_url, prefix)
    finally:
        delete_indexes(es_url, prefix)
    return {"benchmark": NAME, "machine": machine_info(es_url), "config": {"images": images, "seed_shards": SEED_SHARDS,
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
