from __future__ import annotations

import numpy as np
import pytest

from visualsearch.recognition.vocabulary import SIGNATURE_BITS, Vocabulary, hamming, pack_bits, train


def brute_force_words(vocabulary: Vocabulary, descriptors: np.ndarray) -> np.ndarray:
    """Nearest coarse centre, then the nearest of that cell's fine centres, with explicit distances."""
    k2 = vocabulary.fine.shape[1]
    words = []
    for d in descriptors.astype(np.float64):
        cell = int(np.argmin(((vocabulary.coarse - d) ** 2).sum(axis=1)))
        centres = vocabulary.fine[cell, : vocabulary.fine_counts[cell]]
        words.append(cell * k2 + int(np.argmin(((centres - d) ** 2).sum(axis=1))))
    return np.array(words)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.random((n, 128)).astype(np.float32) ** 3
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_training_is_deterministic(training_descriptors):
    a = train(training_descriptors, words=256, seed=3)
    b = train(training_descriptors, words=256, seed=3)
    assert a.id == b.id
    for name in ("coarse", "fine", "fine_counts", "projection", "medians"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.assign(training_descriptors), b.assign(training_descriptors))
    assert train(training_descriptors, words=256, seed=4).id != a.id  # another seed, another vocabulary


def test_id_names_the_size(trained):
    assert trained.size == 1024 == trained.fine.shape[0] * trained.fine.shape[1]
    assert trained.id.startswith("vw1024-") and len(trained.id) == len("vw1024-") + 12


def test_assign_is_nearest_coarse_then_nearest_fine(training_descriptors, local_features):
    small = train(training_descriptors, words=64, seed=0)
    assert small.coarse.shape == (8, 128) and small.fine.shape == (8, 8, 128)
    for descriptors in (training_descriptors, local_features["unseen"].descriptors):
        np.testing.assert_array_equal(small.assign(descriptors), brute_force_words(small, descriptors))


def test_assign_words_stay_inside_their_cell(trained, local_features):
    words = trained.assign(local_features["scene"].descriptors)
    k2 = trained.fine.shape[1]
    assert words.dtype == np.int64
    assert (words % k2 < trained.fine_counts[words // k2]).all()


def test_assign_nothing():
    vocabulary = train(unit_rows(np.random.default_rng(0), 300), words=16)
    assert vocabulary.assign(np.empty((0, 128), np.float32)).shape == (0,)
    assert vocabulary.signatures(np.empty((0, 128), np.float32), np.empty(0, np.int64)).shape == (0,)


def test_medians_are_per_word_medians_of_projections(training_descriptors, trained):
    words = trained.assign(training_descriptors)
    projected = training_descriptors @ trained.projection.T
    global_median = np.median(projected, axis=0)
    for word in range(trained.size):
        members = projected[words == word]
        expected = np.median(members, axis=0) if len(members) >= 4 else global_median
        # Stored (and hashed) at float16 precision, so that a saved vocabulary keeps its id.
        np.testing.assert_array_equal(trained.medians[word], expected.astype(np.float16).astype(np.float32))


def test_projection_is_orthonormal(trained):
    np.testing.assert_allclose(trained.projection @ trained.projection.T, np.eye(SIGNATURE_BITS), atol=1e-5)


def test_signature_bits_are_balanced_on_training_data(training_descriptors, trained):
    signatures = trained.signatures(training_descriptors, trained.assign(training_descriptors))
    bits = np.unpackbits(signatures.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    assert (0.35 < bits.mean(axis=0)).all() and (bits.mean(axis=0) < 0.65).all()


def test_identical_descriptors_give_identical_signatures(trained, local_features):
    descriptors = local_features["unseen"].descriptors
    words = trained.assign(descriptors)
    doubled = trained.signatures(np.vstack([descriptors, descriptors]), np.concatenate([words, words]))
    assert doubled.dtype == np.uint64
    np.testing.assert_array_equal(doubled[: len(words)], doubled[len(words):])


def test_perturbed_descriptor_keeps_a_close_signature(trained, local_features):
    descriptors = local_features["unseen"].descriptors
    noisy = descriptors + np.random.default_rng(0).normal(0, 0.005, descriptors.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    words = trained.assign(descriptors)
    original = trained.signatures(descriptors, words)
    near = hamming(original, trained.signatures(noisy, words))
    far = hamming(original, np.roll(original, 1))  # other descriptors
    assert near.mean() < 4 and np.median(near) <= 2
    assert far.mean() > 24


def test_bytes_round_trip_keeps_assignments(training_descriptors, trained, local_features):
    loaded = Vocabulary.from_bytes(trained.to_bytes())
    assert loaded.size == trained.size
    np.testing.assert_array_equal(loaded.fine_counts, trained.fine_counts)
    np.testing.assert_array_equal(loaded.projection, trained.projection)
    for descriptors in (training_descriptors, local_features["scene"].descriptors):
        np.testing.assert_array_equal(loaded.assign(descriptors), trained.assign(descriptors))


def test_bytes_round_trip_keeps_id_and_signatures(training_descriptors, trained):
    loaded = Vocabulary.from_bytes(trained.to_bytes())
    words = trained.assign(training_descriptors)
    assert loaded.id == trained.id
    for name in ("coarse", "fine", "fine_counts", "projection", "medians"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(trained, name))
    np.testing.assert_array_equal(loaded.signatures(training_descriptors, words),
                                  trained.signatures(training_descriptors, words))


def test_fewer_training_descriptors_than_words():
    descriptors = unit_rows(np.random.default_rng(1), 40)
    vocabulary = train(descriptors, words=1024, seed=0)
    assert vocabulary.size >= 1024
    assert (vocabulary.fine_counts >= 1).all()
    words = vocabulary.assign(descriptors)
    # Every cell has at most as many centres as training descriptors: each descriptor is its own word here.
    assert len(np.unique(words)) == 40
    k2 = vocabulary.fine.shape[1]
    np.testing.assert_array_equal(vocabulary.fine[words // k2, words % k2], descriptors.astype(np.float16))
    np.testing.assert_array_equal(train(descriptors, words=1024, seed=0).assign(descriptors), words)


def test_two_descriptors_are_enough_and_one_is_not():
    descriptors = unit_rows(np.random.default_rng(2), 2)
    assert len(np.unique(train(descriptors, words=256).assign(descriptors))) == 2
    with pytest.raises(ValueError):
        train(descriptors[:1], words=256)


def test_pack_bits_known_patterns():
    bits = np.zeros((5, 64), bool)
    bits[1, 0] = True
    bits[2, 63] = True
    bits[3, :] = True
    bits[4, [0, 2, 3, 8]] = True
    packed = pack_bits(bits)
    assert packed.dtype == np.uint64 and packed.shape == (5,)
    assert packed.tolist() == [0, 1, 1 << 63, (1 << 64) - 1, 0b1_0000_1101]


def test_pack_bits_column_i_is_bit_i():
    bits = np.random.default_rng(0).random((20, 64)) < 0.5
    packed = pack_bits(bits)
    for row, value in zip(bits, packed.tolist()):
        assert value == sum(1 << int(i) for i in np.flatnonzero(row))


def test_hamming_known_patterns():
    a = np.array([0, 0b1011, (1 << 64) - 1, 1 << 63], np.uint64)
    b = np.array([0, 0, 0, (1 << 63) | 1], np.uint64)
    assert hamming(a, b).tolist() == [0, 3, 64, 1]
    table = hamming(a[:, None], b[None, :])  # broadcasting
    assert table.shape == (4, 4)
    assert table[2].tolist() == [64, 64, 64, 62]


def test_hamming_is_symmetric_and_zero_on_itself():
    values = np.random.default_rng(0).integers(0, 2**63, 50, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    np.testing.assert_array_equal(hamming(values, values), 0)
    np.testing.assert_array_equal(hamming(values, values[::-1]), hamming(values[::-1], values))


def test_multiple_assignment_starts_with_the_nearest_word_and_stays_in_its_cell():
    rng = np.random.default_rng(11)
    data = np.abs(rng.normal(size=(4000, 128))).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    vocabulary = train(data, words=1024, seed=0)
    queries = data[:200] + rng.normal(scale=0.01, size=(200, 128)).astype(np.float32)
    words = vocabulary.assign_multiple(queries, 3)
    assert words.shape == (200, 3)
    np.testing.assert_array_equal(words[:, 0], vocabulary.assign_reference(queries))
    k2 = vocabulary.fine.shape[1]
    valid = words >= 0
    assert np.all((words // k2)[valid] == np.repeat(words[:, :1] // k2, 3, axis=1)[valid])  # one coarse cell
    assert len(np.unique(words[valid])) > len(np.unique(words[:, 0]))  # the extra words are other words
