from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visualsearch.recognition import features
from visualsearch.recognition.features import MIN_LONG_SIDE, extract, greyscale, root_sift

from .images import grey, texture


@pytest.mark.parametrize("size, expected", [((2000, 1000), (400, 800)), ((900, 1800), (800, 400))])
def test_greyscale_downsizes_to_long_side(size, expected):
    array = greyscale(Image.new("RGB", size, (200, 30, 60)), 800)
    assert array.shape == expected  # (h, w)
    assert array.dtype == np.uint8 and array.ndim == 2


def test_greyscale_enlarges_small_images_to_min_long_side():
    array = greyscale(Image.new("RGB", (200, 100), "white"), features.QUERY_LONG_SIDE)
    assert array.shape == (MIN_LONG_SIDE // 2, MIN_LONG_SIDE)


def test_greyscale_keeps_mid_sized_images():
    # Between MIN_LONG_SIDE and long_side: neither enlarged to long_side nor shrunk.
    array = greyscale(Image.new("RGB", (600, 300), "white"), 800)
    assert array.shape == (300, 600)


def test_greyscale_accepts_any_mode_and_converts_to_luminance():
    rgba = Image.new("RGBA", (500, 500), (255, 255, 255, 0))
    assert greyscale(rgba, 800).shape == (500, 500)
    assert int(greyscale(Image.new("RGB", (500, 500), (255, 0, 0)), 800)[0, 0]) == 76  # ITU-R 601 luma of red


def test_extract_returns_at_most_max_features():
    image = grey(texture(11))
    assert 50 < len(extract(image))  # enough texture that the cap bites
    for cap in (10, 50):
        found = extract(image, max_features=cap)
        assert 0 < len(found) <= cap
        assert found.keypoints.shape == (len(found), 4) and found.descriptors.shape == (len(found), 128)


def test_extract_rows_are_unit_rootsift():
    found = extract(grey(texture(12)))
    assert found.keypoints.dtype == np.float32 and found.descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(found.descriptors, axis=1), 1.0, atol=1e-5)
    assert (found.descriptors >= 0).all()


def test_extract_reports_analysed_size_and_coordinates_inside_it():
    image = grey(texture(13, (560, 420)))
    found = extract(image)
    assert (found.width, found.height) == (560, 420)
    x, y, scale = found.keypoints[:, 0], found.keypoints[:, 1], found.keypoints[:, 2]
    assert (x >= 0).all() and (x < 560).all() and (y >= 0).all() and (y < 420).all()
    assert (scale > 0).all()
    assert ((found.keypoints[:, 3] >= 0) & (found.keypoints[:, 3] < 360)).all()


def test_extract_is_deterministic():
    image = grey(texture(14))
    a, b = extract(image), extract(image)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.descriptors, b.descriptors)


def test_blank_image_gives_no_features():
    found = extract(np.full((480, 640), 128, np.uint8))
    assert len(found) == 0
    assert found.keypoints.shape == (0, 4) and found.descriptors.shape == (0, 128)
    assert (found.width, found.height) == (640, 480)


def test_extract_after_greyscale_uses_analysed_pixels():
    found = extract(greyscale(texture(15, (1200, 900)), 800))
    assert (found.width, found.height) == (800, 600)
    assert found.keypoints[:, 0].max() < 800 and found.keypoints[:, 1].max() < 600


def test_root_sift_is_sqrt_of_l1_normalised():
    raw = np.random.default_rng(0).integers(0, 200, (5, 128)).astype(np.float32)
    expected = np.sqrt(raw / raw.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(root_sift(raw.copy()), expected, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(root_sift(raw.copy()), axis=1), 1.0, atol=1e-6)


def test_root_sift_leaves_its_input_alone():
    raw = np.random.default_rng(0).integers(1, 200, (5, 128)).astype(np.float32)
    before = raw.copy()
    root_sift(raw)
    np.testing.assert_array_equal(raw, before)
