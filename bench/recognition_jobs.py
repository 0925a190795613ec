"""The Django side of :mod:`bench.recognition`: runs inside a benchmark site's process (via ``bench.jobs``).

- :func:`train_vocabulary`: the production ``recognition.train_vocabulary`` on the site's (real) photos, not
  activated (the next ``reindex`` puts it live), optionally with the vocabulary size production would choose for
  the full-size catalog the benchmark simulates.
- :func:`synthesize`: grow a catalog of R real, indexed photos to N photos. Each synthetic photo is derived from a
  real one (its *base*, round robin): a vector = the base's stored vector + Gaussian noise, renormalised; local
  features = the base's stored record with every visual word moved to another word of about the same document
  frequency (see :func:`_WordShuffle`), so postings lengths, keypoint counts, geometry and record sizes stay
  realistic but the photo no longer matches its base (or any query). Rows are written with ``bulk_create`` in
  chunks, with a unique made-up sha256 and a ProductImage pointing at the base's file (never decoded: the vector
  and the features exist, so ``reindex`` does no model work — the benchmark checks that).
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from typing import Any

import numpy as np
from PIL import Image

CHUNK = 1000  # synthetic photos per transaction
WORD_BIN = 64  # words of similar document frequency that a word may be moved to


# --- vocabulary -----------------------------------------------------------------------------------------------------


def production_words(catalog_size: int, descriptors: int, sample_photos: int, opts: dict) -> int:
    """The vocabulary size ``recognition.train_vocabulary`` would choose on a catalog of ``catalog_size`` photos
    whose photos give as many features as the sample's: it samples up to TRAINING_PHOTOS photos, caps the
    descriptors at TRAINING_DESCRIPTORS, then takes ~DESCRIPTORS_PER_WORD descriptors per word, at most WORDS."""
    from visualsearch.services import recognition

    per_photo = descriptors / max(1, sample_photos)
    training = min(opts["TRAINING_DESCRIPTORS"], int(min(catalog_size, opts["TRAINING_PHOTOS"]) * per_photo))
    return int(min(opts["WORDS"], max(64, training // recognition.DESCRIPTORS_PER_WORD)))


def train_vocabulary(words: str, catalog_size: int) -> dict[str, Any]:
    """``recognition.train_vocabulary(activate=False)`` on the site's photos. ``words``: ``sample`` (the production
    rule on these photos), ``catalog`` (the production rule for ``catalog_size`` photos like these) or a number."""
    from catalog.models import ProductImage
    from visualsearch.recognition import vocabulary
    from visualsearch.services import recognition

    opts = dict(recognition.options())
    seen: dict[str, Any] = {}
    original = vocabulary.train

    def train(descriptors, *, words: int, seed: int = 0, iterations: int = 20):
        seen["descriptors"] = len(descriptors)
        seen["words_production_rule_on_sample"] = words
        size = words
        if mode == "catalog":
            size = production_words(catalog_size, len(descriptors), seen["sample_photos"], opts)
        elif mode != "sample":
            size = int(mode)
        seen["words_requested"] = size
        started = time.perf_counter()
        trained = original(descriptors, words=size, seed=seed, iterations=iterations)
        seen["kmeans_s"] = time.perf_counter() - started
        seen["word_ids"] = trained.size
        seen["words_effective"] = int(trained.fine_counts.sum())  # fine cells never have more centres than points
        seen["coarse"], seen["fine_per_coarse"] = int(trained.fine.shape[0]), int(trained.fine.shape[1])
        return trained

    mode = words
    seen["sample_photos"] = min(ProductImage.objects.values("sha256").distinct().count(), opts["TRAINING_PHOTOS"])
    vocabulary.train = train  # train_vocabulary calls it through the module
    started = time.perf_counter()
    row = recognition.train_vocabulary(activate=False)
    seconds = time.perf_counter() - started
    vocabulary.train = original
    if row is None:
        raise SystemExit("bench: the real photos gave too few local features to train a vocabulary")
    return {
        "seconds": seconds,
        "analysis_s": seconds - seen["kmeans_s"],  # decode + SIFT of the training sample (+ storing the file)
        "vocabulary_id": row.vocabulary_id,
        "file": row.file.name,
        "file_bytes": row.file.size,
        "photos": row.photos,
        "mode": mode,
        **seen,
        "settings": opts,
        "query_analysis": _query_analysis(),
    }


def _query_analysis() -> dict[str, Any]:
    """The size a bench query photo is decoded at and analysed at (what the search service does with it)."""
    from catalog.models import ProductImage
    from visualsearch.recognition import features
    from visualsearch.services import recognition
    from visualsearch.services.search import decode_query

    photo = ProductImage.objects.order_by("pk").first()
    with photo.image.open("rb") as stored:
        data = stored.read()
    with Image.open(io.BytesIO(data)) as original:
        size = original.size
    decoded = decode_query(data)
    opts = recognition.options()
    grey = features.greyscale(decoded, opts["QUERY_LONG_SIDE"])
    fast = features.greyscale(decoded, opts["FAST_QUERY_LONG_SIDE"] or opts["QUERY_LONG_SIDE"])
    return {"uploaded": list(size), "decoded": list(decoded.size), "analysed": [grey.shape[1], grey.shape[0]],
            "analysed_fast": [fast.shape[1], fast.shape[0]], "query_long_side_setting": opts["QUERY_LONG_SIDE"],
            "fast_long_side_setting": opts["FAST_QUERY_LONG_SIDE"]}  # fmt: skip


# --- synthetic catalog ----------------------------------------------------------------------------------------------


class _WordShuffle:
    """Moves every visual word to another word of about the same document frequency, differently per photo.

    All word ids are ordered by their document frequency among the real photos (ties in random order) and cut
    into bins of :data:`WORD_BIN`; a photo's words move within their bin by a random non-zero cyclic shift per bin
    (one draw per photo and bin), which is a permutation of the vocabulary that changes every word. A uniform
    permutation would flatten the word-frequency distribution (every word as frequent as the average), making
    the visual-word candidate stage cheaper than on a real catalog, where queries hit frequent words most.
    """

    def __init__(self, word_lists: list[np.ndarray], vocabulary_size: int, rng: np.random.Generator) -> None:
        df = np.zeros(vocabulary_size, dtype=np.int64)
        for words in word_lists:
            df[np.unique(words)] += 1
        self.order = np.lexsort((rng.random(vocabulary_size), -df))  # word ids, most frequent first
        self.rank = np.empty(vocabulary_size, dtype=np.int64)
        self.rank[self.order] = np.arange(vocabulary_size)
        self.bins = -(-vocabulary_size // WORD_BIN)
        self.sizes = np.full(self.bins, WORD_BIN, dtype=np.int64)
        self.sizes[-1] = vocabulary_size - (self.bins - 1) * WORD_BIN
        self.used_words = int((df > 0).sum())
        self.rng = rng

    def __call__(self, words: np.ndarray) -> np.ndarray:
        rank = self.rank[words]
        bins, within = rank // WORD_BIN, rank % WORD_BIN
        shift = self.rng.integers(1, WORD_BIN, self.bins)[bins]
        return self.order[bins * WORD_BIN + (within + shift) % self.sizes[bins]]


def _nearest_other_group_cosines(vectors: np.ndarray, groups: list[str]) -> np.ndarray:
    """Per real photo, the cosine of its nearest real photo of another group (another product)."""
    cos = vectors @ vectors.T
    keys = np.unique(np.asarray(groups), return_inverse=True)[1]
    cos[keys[:, None] == keys[None, :]] = -np.inf
    return cos.max(axis=1)


def synthesize(total: int, per_product: int, noise_cos: str, groups: dict[str, str] | None, seed: int) -> dict:
    """Add ``total`` − R synthetic photos (R = the real photos already stored with vectors and features)."""
    from django.db import connection, transaction

    from catalog.models import IndexStatus, Product, ProductImage
    from visualsearch.models import ImageEmbedding, LocalFeatureSet, vector_from_bytes, vector_to_bytes
    from visualsearch.recognition import packing
    from visualsearch.recognition.verification import PhotoFeatures
    from visualsearch.registry import get_extractor
    from visualsearch.services import recognition

    started = time.perf_counter()
    extractor_id = get_extractor().id
    recognizer = recognition.newest_recognizer()
    if recognizer is None:
        raise SystemExit("bench: no vocabulary in the site (train-vocabulary and reindex the real photos first)")
    real = list(ProductImage.objects.order_by("pk").values_list("sha256", "image", "width", "height"))
    vectors = dict(ImageEmbedding.objects.filter(extractor_id=extractor_id).values_list("sha256", "vector"))
    records = dict(LocalFeatureSet.objects.filter(feature_id=recognizer.feature_id).values_list("sha256", "data"))
    usable = [row for row in real if row[0] in vectors and row[0] in records]
    if not usable:
        raise SystemExit("bench: no real photo has both a stored vector and stored local features")
    bases = [(sha, name, w, h, vector_from_bytes(vectors[sha]), packing.unpack(records[sha]), len(records[sha]))
             for sha, name, w, h in usable]  # fmt: skip
    sizes = np.array([b[6] for b in bases])
    keypoints = np.array([len(b[5]) for b in bases])
    real_stats = {
        "photos": len(real), "with_vector_and_features": len(usable),
        "record_bytes": {"p50": float(np.median(sizes)), "mean": float(sizes.mean()), "max": int(sizes.max()),
                         "min": int(sizes.min())},
        "keypoints": {"p50": float(np.median(keypoints)), "mean": float(keypoints.mean()),
                      "max": int(keypoints.max()), "min": int(keypoints.min())},
        "vector_bytes": len(vectors[usable[0][0]]),
    }  # fmt: skip

    matrix = np.stack([b[4] for b in bases])
    nearest = _nearest_other_group_cosines(matrix, [(groups or {}).get(b[0], b[0]) for b in bases])
    target = float(np.median(nearest)) if noise_cos == "auto" else float(noise_cos)
    if not 0 < target < 1:
        raise SystemExit(f"bench: --noise-cos must be in (0, 1), got {target}")
    dim = matrix.shape[1]
    sigma = float(np.sqrt((1 / target**2 - 1) / dim))  # E[cos(v + n, v)] ≈ 1 / sqrt(1 + dim σ²) for unit v

    rng = np.random.default_rng(seed)
    shuffle = _WordShuffle([b[5].words for b in bases], recognizer.vocabulary.size, rng)
    _check_round_trip(bases[0][5], shuffle, packing, PhotoFeatures)

    count = max(0, total - len(real))
    chunk_size = per_product * -(-CHUNK // per_product)  # whole products per chunk: relation ids stay unique
    made = {"cos_to_base": [], "words_changed": [], "seconds_rows": 0.0, "seconds_db": 0.0}
    products_before = Product.objects.count()
    for chunk_start in range(0, count, chunk_size):
        chunk = range(chunk_start, min(count, chunk_start + chunk_size))
        t0 = time.perf_counter()
        products, images, embeddings, features = [], [], [], []
        for j in chunk:
            if j % per_product == 0:
                products.append(Product(relation_id=f"synthetic-{j // per_product:06d}",
                                        title=f"Synthetic product {j // per_product}",
                                        category=f"cat{(j // per_product) % 10}", price="9.90"))  # fmt: skip
            base_sha, name, width, height, vector, base_features, _ = bases[j % len(bases)]
            sha = hashlib.sha256(f"bench-synthetic-{seed}-{j}".encode()).hexdigest()
            noisy = vector + rng.normal(0.0, sigma, dim).astype(np.float32)
            noisy /= np.linalg.norm(noisy)
            words = shuffle(base_features.words)
            if j < 2000:  # a sample is enough for the statistics
                made["cos_to_base"].append(float(noisy @ vector))
                made["words_changed"].append(float(np.mean(words != base_features.words)))
            moved = PhotoFeatures(base_features.keypoints, words, base_features.signatures, base_features.width,
                                  base_features.height)  # fmt: skip
            images.append((len(products) - 1, name, sha, width, height, j % per_product))
            embeddings.append(ImageEmbedding(sha256=sha, extractor_id=extractor_id, dim=dim,
                                             vector=vector_to_bytes(noisy)))  # fmt: skip
            features.append(LocalFeatureSet(sha256=sha, feature_id=recognizer.feature_id, keypoints=len(moved),
                                            data=packing.pack(moved)))  # fmt: skip
        t1 = time.perf_counter()
        with transaction.atomic():
            created = Product.objects.bulk_create(products)
            ProductImage.objects.bulk_create([
                ProductImage(product=created[p], image=name, sha256=sha, width=w, height=h, position=position,
                             index_status=IndexStatus.PENDING)
                for p, name, sha, w, h, position in images
            ])  # fmt: skip
            ImageEmbedding.objects.bulk_create(embeddings)
            LocalFeatureSet.objects.bulk_create(features)
        made["seconds_rows"] += t1 - t0
        made["seconds_db"] += time.perf_counter() - t1
    database = connection.settings_dict["NAME"]
    return {
        "seconds": time.perf_counter() - started,
        "real": real_stats,
        "synthetic_photos": count,
        "synthetic_products": Product.objects.count() - products_before,
        "photos_total": ProductImage.objects.count(),
        "feature_id": recognizer.feature_id,
        "vocabulary_size": recognizer.vocabulary.size,
        "words_used_by_real_photos": shuffle.used_words,
        "word_bin": WORD_BIN,
        "noise": {
            "mode": noise_cos,
            "target_cos_to_base": target,
            "sigma_per_dim": sigma,
            "real_nearest_other_group_cos": {"p10": float(np.percentile(nearest, 10)),
                                             "p50": float(np.median(nearest)),
                                             "p90": float(np.percentile(nearest, 90))},
            "synthetic_cos_to_base_mean": float(np.mean(made["cos_to_base"])) if made["cos_to_base"] else None,
        },  # fmt: skip
        "words_changed_mean": float(np.mean(made["words_changed"])) if made["words_changed"] else None,
        "seconds_building_rows": made["seconds_rows"],
        "seconds_inserting": made["seconds_db"],
        "database_bytes": os.path.getsize(database) if isinstance(database, (str, os.PathLike)) and
        os.path.exists(database) else None,
    }


def _check_round_trip(features, shuffle, packing, PhotoFeatures) -> None:
    """A remapped record keeps everything of its base but the words (the packed format round-trips)."""
    words = shuffle(features.words)
    again = packing.unpack(packing.pack(PhotoFeatures(features.keypoints, words, features.signatures, features.width,
                                                      features.height)))  # fmt: skip
    assert np.array_equal(again.keypoints, features.keypoints), "packed keypoints changed in a round trip"
    assert np.array_equal(again.signatures, features.signatures), "signatures changed in a round trip"
    assert np.array_equal(again.words, words), "words changed in a round trip"
    # shuffle consumed random draws: harmless (the generator is only required to be deterministic for a seed)
