from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import scene
from visualsearch.extractors.base import ExtractorConfigurationError
from visualsearch.extractors.vgg16 import VGG16Extractor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vgg16():
    return VGG16Extractor(weights="random")


def test_vectors_are_512d_unit_float32(vgg16):
    vectors = vgg16.embed([scene(1), scene(2, size=(640, 480)), scene(3).convert("L").convert("RGB")])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_deterministic_and_batch_independent(vgg16):
    single = vgg16.embed([scene(4)])
    batch = vgg16.embed([scene(5), scene(4)])
    assert np.allclose(single[0], batch[1], atol=1e-5)
    assert np.array_equal(vgg16.embed([scene(4)]), single)


def test_empty_batch(vgg16):
    assert vgg16.embed([]).shape == (0, 512)


def test_id_names_the_weights(vgg16, tmp_path):
    assert vgg16.id == "vgg16-random-maxpool-v1"
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"pretend")
    assert VGG16Extractor(weights=str(weights)).id.startswith("vgg16-file")


def test_missing_weights_file_says_what_to_do(tmp_path):
    with pytest.raises(ExtractorConfigurationError, match="efficientnet_lite0"):
        VGG16Extractor(weights=str(tmp_path / "missing.h5"))


def test_imagenet_weights_unavailable_offline_names_the_options(tmp_path, monkeypatch):
    """On a machine without the cached file and without internet, the error explains the ways out."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    extractor = VGG16Extractor(weights="imagenet")
    try:
        extractor.embed([scene(1)])
    except ExtractorConfigurationError as exc:
        assert "VISUALSEARCH_WEIGHTS" in str(exc) and "efficientnet_lite0" in str(exc)
    else:  # only a machine with internet gets here: then the real weights must have loaded
        assert (tmp_path / "models").exists()
