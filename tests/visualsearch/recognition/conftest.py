"""Shared, package-scoped data for the recognition tests: a textured 'product', a cluttered scene showing it under a
known homography, and a small vocabulary trained on a few images' descriptors (computed once: SIFT and k-means are
the slow parts)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from visualsearch.recognition import features, vocabulary
from visualsearch.recognition.verification import PhotoFeatures

from .images import PRODUCT_SIZE, SCENE_SIZE, grey, known_homography, paste_warped, texture


@pytest.fixture(scope="package", autouse=True)
def single_threaded_faiss():
    """k-means on one thread: these vocabularies are tiny, and OpenMP threads on a busy machine cost seconds
    (the trained vocabulary is identical whatever the thread count)."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


@dataclass(frozen=True)
class Images:
    product: np.ndarray  # uint8 grey, PRODUCT_SIZE: the catalog photo
    scene: np.ndarray  # uint8 grey, SCENE_SIZE: the product warped by ``homography`` over clutter
    homography: np.ndarray  # product pixels → scene pixels
    unrelated: np.ndarray  # uint8 grey, PRODUCT_SIZE: same generator, another seed
    unseen: np.ndarray  # uint8 grey, PRODUCT_SIZE: not used for training


@pytest.fixture(scope="package")
def images() -> Images:
    product = grey(texture(1, PRODUCT_SIZE))
    homography = known_homography(PRODUCT_SIZE, SCENE_SIZE)
    scene = paste_warped(product, grey(texture(2, SCENE_SIZE)), homography)
    return Images(product, scene, homography, grey(texture(3, PRODUCT_SIZE)), grey(texture(4, PRODUCT_SIZE)))


@pytest.fixture(scope="package")
def local_features(images) -> dict[str, features.LocalFeatures]:
    return {name: features.extract(getattr(images, name)) for name in ("product", "scene", "unrelated", "unseen")}


@pytest.fixture(scope="package")
def training_descriptors(local_features) -> np.ndarray:
    """The catalog's descriptors: the product and the unrelated photo (never the query scene)."""
    return np.vstack([local_features["product"].descriptors, local_features["unrelated"].descriptors])


@pytest.fixture(scope="package")
def trained(training_descriptors) -> vocabulary.Vocabulary:
    return vocabulary.train(training_descriptors, words=1024, seed=0)


@pytest.fixture(scope="package")
def photo_features(trained):
    """LocalFeatures → PhotoFeatures under the session vocabulary."""

    def convert(local: features.LocalFeatures) -> PhotoFeatures:
        words = trained.assign(local.descriptors)
        return PhotoFeatures(local.keypoints, words, trained.signatures(local.descriptors, words), local.width,
                             local.height)

    return convert
