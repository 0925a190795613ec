from __future__ import annotations

import numpy as np
import pytest

from visualsearch.recognition.packing import pack, unpack, words_of
from visualsearch.recognition.verification import PhotoFeatures

HEADER = 12  # magic, width, height, count
PER_KEYPOINT = 19


def random_features(n: int, seed: int = 0, size=(1024, 768)) -> PhotoFeatures:
    rng = np.random.default_rng(seed)
    keypoints = np.column_stack([
        rng.uniform(0, size[0], n), rng.uniform(0, size[1], n), rng.uniform(1.5, 120, n), rng.uniform(0, 360, n),
    ]).astype(np.float32)
    words = rng.integers(0, 65_536, n)
    signatures = rng.integers(0, 2**64, n, dtype=np.uint64)
    if n:
        words[0], signatures[0] = 2**32 - 1, np.uint64(2**64 - 1)  # extremes of both columns
        keypoints[0, 3] = 359.9  # wraps to 0°
    return PhotoFeatures(keypoints, words, signatures, *size)


def test_round_trip():
    features = random_features(300)
    restored = unpack(pack(features))
    assert (restored.width, restored.height) == (1024, 768)
    assert restored.keypoints.dtype == np.float32 and restored.keypoints.shape == (300, 4)
    np.testing.assert_allclose(restored.keypoints[:, :2], features.keypoints[:, :2], atol=1 / 32 + 1e-4)
    np.testing.assert_array_equal(restored.keypoints[:, 2], features.keypoints[:, 2].astype(np.float16))
    angle_error = (restored.keypoints[:, 3] - features.keypoints[:, 3] + 180) % 360 - 180
    assert np.abs(angle_error).max() <= 360 / 512 + 1e-4
    assert ((restored.keypoints[:, 3] >= 0) & (restored.keypoints[:, 3] < 360)).all()
    assert restored.words.dtype == np.int64 and restored.signatures.dtype == np.uint64
    np.testing.assert_array_equal(restored.words, features.words)
    np.testing.assert_array_equal(restored.signatures, features.signatures)


def test_coordinates_are_sixteenths_of_a_pixel():
    keypoints = np.array([[10.0625, 3.5, 2.0, 0.0], [4095.9375, 0.0, 1.0, 90.0]], np.float32)
    features = PhotoFeatures(keypoints, np.array([1, 2]), np.array([3, 4], np.uint64), 4096, 4096)
    restored = unpack(pack(features))
    np.testing.assert_array_equal(restored.keypoints, keypoints)  # all exactly representable


def test_out_of_range_coordinates_are_clipped():
    keypoints = np.array([[-3.0, 5000.0, 2.0, -90.0]], np.float32)
    restored = unpack(pack(PhotoFeatures(keypoints, np.array([0]), np.array([0], np.uint64), 10, 10)))
    assert restored.keypoints[0, :2].tolist() == [0.0, 65535 / 16]
    assert restored.keypoints[0, 3] == 270.0


def test_round_trip_keeps_what_verification_needs():
    """Unpacked features verify as the originals do (their geometry moves by at most 1/32 px)."""
    from visualsearch.recognition.verification import verify

    rng = np.random.default_rng(4)
    xy = rng.uniform(10, 470, (40, 2))
    keypoints = np.column_stack([xy, np.full(40, 3.0), np.zeros(40)]).astype(np.float32)
    features = PhotoFeatures(keypoints, np.arange(40), np.zeros(40, np.uint64), 480, 480)
    assert verify(unpack(pack(features)), features).inliers == 40


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_size_is_19_bytes_per_keypoint_plus_header(n):
    data = pack(random_features(n))
    assert len(data) == HEADER + PER_KEYPOINT * n
    assert data[:4] == b"LFv1"
    assert len(unpack(data)) == n


def test_unpack_accepts_memoryview_and_bytearray():
    data = pack(random_features(5))
    for view in (memoryview(data), bytearray(data)):
        np.testing.assert_array_equal(unpack(view).signatures, unpack(data).signatures)


def test_unpacked_arrays_are_writable_copies():
    restored = unpack(pack(random_features(5)))
    # Arrays straight from np.frombuffer would be read-only: these assignments would raise.
    restored.keypoints[0, 0] = 1.0  # float32 buffer built by unpack
    restored.words[0] = 1
    restored.signatures[0] = np.uint64(1)


@pytest.mark.parametrize("damage", [
    lambda data: data[:-1],  # truncated inside the last column
    lambda data: data[: HEADER + 7],  # truncated inside the first column
    lambda data: data[:HEADER],  # header only
    lambda data: data + b"\0",  # trailing garbage
    lambda data: b"LFv2" + data[4:],  # another format version
    lambda data: b"\x89PNG" + data[4:],  # not a record at all
    lambda data: data[:4] + data[4:8] + (10**6).to_bytes(4, "little") + data[12:],  # count too large
], ids=["truncated-end", "truncated-column", "header-only", "trailing", "version", "magic", "count"])
def test_damaged_record_raises_value_error(damage):
    with pytest.raises(ValueError):
        unpack(damage(pack(random_features(20))))


@pytest.mark.parametrize("n", [0, 1, 57])
def test_words_of_reads_only_the_words(n):
    data = pack(random_features(n, seed=n))
    words = words_of(data)
    assert words.dtype == np.int64
    np.testing.assert_array_equal(words, unpack(data).words)
    np.testing.assert_array_equal(words_of(memoryview(data)), words)


@pytest.mark.parametrize("damage", [
    lambda data: b"LFv2" + data[4:],
    lambda data: data[: HEADER + 7 * 20 + 10],  # truncated inside the word column
], ids=["version", "truncated-words"])
def test_words_of_damaged_record_raises_value_error(damage):
    with pytest.raises(ValueError):
        words_of(damage(pack(random_features(20))))


@pytest.mark.parametrize("damage", [lambda data: data[:-1], lambda data: data + b"\0"],
                         ids=["truncated-end", "trailing"])
def test_words_of_rejects_what_unpack_rejects(damage):
    with pytest.raises(ValueError):
        words_of(damage(pack(random_features(20))))


@pytest.mark.parametrize("data", [b"", b"LFv", b"LFv1\x00\x01"], ids=["empty", "magic-cut", "header-cut"])
def test_record_shorter_than_header_raises_value_error(data):
    with pytest.raises(ValueError):
        unpack(data)
    with pytest.raises(ValueError):
        words_of(data)
