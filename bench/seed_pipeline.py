"""The seed article's indexing loop, as its own process (so its start-up counts like ours does).

    python -m bench.seed_pipeline --manifest photos.json --es-url URL --index NAME --out result.json

Per photo: ``keras.utils.load_img(path, target_size=(224, 224))`` → ``img_to_array`` → ``expand_dims`` →
``preprocess_input`` → ``model.predict(x)`` (one image) with ``VGG16(include_top=False, pooling="max")`` →
L2-normalise → ``es.index(..., refresh=True)``. Random weights: ImageNet VGG16 cannot be downloaded here, and the
compute is the same. Reproduced in the benchmark only; nothing in the product works this way.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import quiet_tensorflow, timed

SEED_SHARDS = 3  # the seed's cluster used 3 shards and 1 replica; a replica cannot be allocated on one node


def create_index(es, name: str) -> dict[str, Any]:
    """The seed's index: a 512-d dense_vector (cosine) with Elasticsearch's default index options for it."""
    es.indices.create(
        index=name,
        settings={"number_of_shards": SEED_SHARDS, "number_of_replicas": 0},
        mappings={"properties": {"relation_id": {"type": "keyword"}, "image_path": {"type": "keyword"},
                                 "vector": {"type": "dense_vector", "dims": 512, "index": True,
                                            "similarity": "cosine"}}},
    )  # fmt: skip
    return es.indices.get_mapping(index=name)[name]["mappings"]["properties"]["vector"]


def index_photos(paths: list[str], es_url: str, index: str) -> dict[str, Any]:
    quiet_tensorflow()
    import keras
    from elasticsearch import Elasticsearch
    from keras.applications.vgg16 import VGG16, preprocess_input

    model = VGG16(include_top=False, weights=None, pooling="max")  # the seed: weights="imagenet"
    es = Elasticsearch([es_url], request_timeout=60)
    mapping = create_index(es, index)
    model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)  # first predict traces: start-up, not loop
    phases: dict[str, float] = {}
    started = time.perf_counter()
    for i, path in enumerate(paths):
        with timed(phases, "load_img + img_to_array + preprocess_input"):
            image = keras.utils.load_img(path, target_size=(224, 224))
            x = preprocess_input(np.expand_dims(keras.utils.img_to_array(image), axis=0))
        with timed(phases, "model.predict (one image)"):
            feature = model.predict(x, verbose=0)[0]  # verbose=0: the seed printed a progress bar per photo
        with timed(phases, "normalise + es.index(refresh=True)"):
            vector = feature / np.linalg.norm(feature)
            document = {"relation_id": f"bench-{i // 4:06d}", "image_path": path, "vector": vector.tolist()}
            es.index(index=index, id=str(i), document=document, refresh=True)
    seconds = time.perf_counter() - started
    count = es.count(index=index)["count"]
    es.close()
    return {"seconds": seconds, "phases_s": phases, "indexed": count, "vector_mapping": mapping,
            "shards": SEED_SHARDS}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_pipeline")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--es-url", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    paths = [row["path"] for row in json.loads(args.manifest.read_text())]
    args.out.write_text(json.dumps(index_photos(paths, args.es_url, args.index)))


if __name__ == "__main__":
    main()
