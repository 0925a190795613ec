from __future__ import annotations

import cv2
import numpy as np
import pytest

from visualsearch.recognition import features
from visualsearch.recognition.verification import (
    BURST_LIMIT, HAMMING_THRESHOLD, MIN_CORRESPONDENCES, NOT_VERIFIED, PAIRS_PER_FEATURE, PhotoFeatures,
    correspondences, correspondences_many, hull_coverage, inlier_bound, inlier_bounds, plausible, verify,
)
from visualsearch.recognition.vocabulary import hamming

from .images import PRODUCT_SIZE, corners, project

W, H = PRODUCT_SIZE


@pytest.fixture(scope="module")
def product(local_features, photo_features) -> PhotoFeatures:
    return photo_features(local_features["product"])


@pytest.fixture(scope="module")
def scene(local_features, photo_features) -> PhotoFeatures:
    return photo_features(local_features["scene"])


@pytest.fixture(scope="module")
def unrelated(local_features, photo_features) -> PhotoFeatures:
    return photo_features(local_features["unrelated"])


@pytest.fixture(scope="module")
def mirrored_scene(images, photo_features) -> PhotoFeatures:
    return photo_features(features.extract(np.ascontiguousarray(images.scene[:, ::-1])))


def synthetic(xy, words, signatures=None, size=(640, 640)) -> PhotoFeatures:
    xy = np.asarray(xy, np.float32).reshape(-1, 2)
    keypoints = np.zeros((len(xy), 4), np.float32)
    keypoints[:, :2], keypoints[:, 2] = xy, 4.0
    words = np.asarray(words, np.int64)
    signatures = np.zeros(len(words), np.uint64) if signatures is None else np.asarray(signatures, np.uint64)
    return PhotoFeatures(keypoints, words, signatures, *size)


def brute_force_correspondences(query: PhotoFeatures, candidate: PhotoFeatures) -> set[tuple[int, int]]:
    pairs = set()
    for q in range(len(query)):
        partners = [c for c in range(len(candidate)) if candidate.words[c] == query.words[q]]
        if len(partners) > BURST_LIMIT:
            continue
        close = []
        for c in partners:
            distance = bin(int(query.signatures[q]) ^ int(candidate.signatures[c])).count("1")
            if distance <= HAMMING_THRESHOLD:
                close.append((distance, c))
        pairs.update((q, c) for _, c in sorted(close)[:PAIRS_PER_FEATURE])
    return pairs


# --- real images -----------------------------------------------------------------------------------------------------

def test_warped_product_in_clutter_verifies(scene, product):
    q_rows, _ = correspondences(scene, product)
    result = verify(scene, product)
    assert result.verified
    assert result.inliers >= 30
    # Most query locations that found a partner found the right one (inliers count distinct locations: SIFT gives
    # one location several orientations).
    locations = len(np.unique(np.round(scene.keypoints[np.unique(q_rows), :2]), axis=0))
    assert result.inliers >= 0.4 * locations
    assert result.coverage > 0.5  # the inliers span most of the product photo


def test_homography_maps_corners_where_the_known_transform_does(images, scene, product):
    result = verify(scene, product)
    estimated = project(corners(W, H), result.homography)
    expected = project(corners(W, H), images.homography)
    assert np.linalg.norm(estimated - expected, axis=1).max() < 5.0


def test_verification_is_deterministic_for_a_seed(scene, product):
    a, b = verify(scene, product, seed=7), verify(scene, product, seed=7)
    assert a.inliers == b.inliers and a.coverage == b.coverage
    np.testing.assert_array_equal(a.homography, b.homography)


def test_photo_verifies_against_itself_with_identity(product):
    result = verify(product, product)
    locations = len(np.unique(np.round(product.keypoints[:, :2]), axis=0))
    assert result.verified and result.inliers >= 0.8 * locations
    np.testing.assert_allclose(result.homography / result.homography[2, 2], np.eye(3), atol=1e-3)


def test_unrelated_photo_does_not_verify(scene, product, unrelated):
    assert verify(unrelated, product) == NOT_VERIFIED
    assert verify(scene, unrelated) == NOT_VERIFIED
    assert verify(product, unrelated) == NOT_VERIFIED


def test_mirrored_query_finds_far_fewer_inliers(scene, mirrored_scene, product):
    assert verify(mirrored_scene, product).inliers < 0.1 * verify(scene, product).inliers


def test_mirrored_query_does_not_verify(mirrored_scene, product):
    assert not verify(mirrored_scene, product).verified


def test_mirrored_geometry_with_same_words_does_not_verify(scene, product):
    """The same correspondences, mirrored: the only consistent model is a reflection, which is rejected."""
    # USAC_MAGSAC itself refuses reflections (it returns no model for an exact mirror), plausible() is the backstop.
    keypoints = scene.keypoints.copy()
    keypoints[:, 0] = scene.width - keypoints[:, 0]
    mirrored = PhotoFeatures(keypoints, scene.words, scene.signatures, scene.width, scene.height)
    assert not verify(mirrored, product).verified


# --- correspondences --------------------------------------------------------------------------------------------------

def test_correspondences_match_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)

    def random_features(n):
        words = rng.integers(0, 12, n)
        flips = rng.integers(0, 2**63, n, dtype=np.uint64) & rng.integers(0, 2**63, n, dtype=np.uint64)
        signatures = base[words] ^ np.where(rng.random(n) < 0.5, flips, flips & np.uint64(0xFFFF))
        return synthetic(rng.uniform(0, 600, (n, 2)), words, signatures)

    for n_query, n_candidate in [(60, 80), (80, 30), (30, 200), (5, 5)]:
        query, candidate = random_features(n_query), random_features(n_candidate)
        q_rows, c_rows = correspondences(query, candidate)
        pairs = set(zip(q_rows.tolist(), c_rows.tolist()))
        assert len(pairs) == len(q_rows)  # no duplicates
        assert pairs == brute_force_correspondences(query, candidate)


def test_a_whole_shortlist_gets_the_same_correspondences_as_one_candidate_at_a_time():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)

    def random_features(n, words=12):
        chosen = rng.integers(0, words, n)
        flips = rng.integers(0, 2**63, n, dtype=np.uint64) & rng.integers(0, 2**63, n, dtype=np.uint64)
        signatures = base[chosen % 40] ^ np.where(rng.random(n) < 0.5, flips, flips & np.uint64(0xFFFF))
        return synthetic(rng.uniform(0, 600, (n, 2)), chosen, signatures)

    query = random_features(150)
    # bursts (a word 20 times in one photo), empty photos, photos sharing nothing, ordinary ones
    shortlist = [random_features(n, words) for n, words in [(80, 12), (0, 12), (30, 200), (200, 12), (20, 1), (5, 40)]]
    together = correspondences_many(query, shortlist)
    assert len(together) == len(shortlist)
    for candidate, (q_rows, c_rows) in zip(shortlist, together):
        alone = correspondences(query, candidate)
        assert q_rows.tolist() == alone[0].tolist() and c_rows.tolist() == alone[1].tolist()
    assert inlier_bounds(query, together) == [inlier_bound(query, pairs) for pairs in together]
    assert sum(len(q) for q, _ in together) > 100  # the comparison was not vacuous
    nothing = correspondences_many(synthetic(np.empty((0, 2)), []), shortlist)
    assert len(nothing) == len(shortlist) and all(len(q) == len(c) == 0 for q, c in nothing)


def test_correspondences_need_close_signatures():
    near = np.uint64((1 << HAMMING_THRESHOLD) - 1)  # exactly the threshold
    far = np.uint64((1 << (HAMMING_THRESHOLD + 1)) - 1)
    query = synthetic([[0, 0]], [3], [0])
    assert correspondences(query, synthetic([[0, 0], [1, 1]], [3, 4], [near, 0]))[1].tolist() == [0]
    assert correspondences(query, synthetic([[0, 0]], [3], [far]))[1].tolist() == []


def test_query_feature_keeps_its_closest_partners():
    signatures = [(1 << d) - 1 for d in (5, 1, 9, 1, 0)]  # distances 5, 1, 9, 1, 0
    q_rows, c_rows = correspondences(synthetic([[0, 0]], [2], [0]), synthetic(np.zeros((5, 2)), [2] * 5, signatures))
    assert q_rows.tolist() == [0] * PAIRS_PER_FEATURE
    assert c_rows.tolist() == [4, 1]  # distance 0, then the lower row of the two at distance 1


def test_bursty_word_is_skipped():
    query = synthetic([[0, 0], [1, 1]], [1, 2])
    candidate = synthetic(np.zeros((2 * BURST_LIMIT + 1, 2)), [1] * BURST_LIMIT + [2] * (BURST_LIMIT + 1))
    q_rows, c_rows = correspondences(query, candidate)
    assert set(q_rows.tolist()) == {0}  # word 1 (BURST_LIMIT times) kept, word 2 (one more) skipped
    assert all(candidate.words[c] == 1 for c in c_rows)


def test_empty_features_give_nothing():
    empty = synthetic(np.zeros((0, 2)), [])
    other = synthetic([[1, 1]], [1])
    for query, candidate in [(empty, other), (other, empty), (empty, empty)]:
        assert [len(rows) for rows in correspondences(query, candidate)] == [0, 0]
        assert verify(query, candidate) == NOT_VERIFIED
    assert not NOT_VERIFIED.verified and NOT_VERIFIED.inliers == 0


def test_too_few_correspondences_do_not_verify():
    rng = np.random.default_rng(1)
    xy = rng.uniform(20, 460, (MIN_CORRESPONDENCES - 1, 2))
    words = np.arange(len(xy))
    assert verify(synthetic(xy + 10, words), synthetic(xy, words, size=(480, 480))) == NOT_VERIFIED


def test_exact_synthetic_correspondences_recover_the_homography(images):
    rng = np.random.default_rng(2)
    xy = rng.uniform(10, 470, (40, 2))
    words = np.arange(40)
    result = verify(synthetic(project(xy, images.homography), words), synthetic(xy, words, size=(W, H)))
    assert result.verified and result.inliers == 40
    np.testing.assert_allclose(project(corners(W, H), result.homography),
                               project(corners(W, H), images.homography), atol=0.5)


def test_four_duplicated_points_do_not_verify(images):
    xy = np.repeat(np.random.default_rng(0).uniform(50, 430, (4, 2)), 2, axis=0)  # each point twice
    words = np.repeat(np.arange(4), 2)
    assert not verify(synthetic(project(xy, images.homography), words), synthetic(xy, words, size=(W, H))).verified


# --- plausible and coverage ------------------------------------------------------------------------------------------

def test_plausible_accepts_a_perspective_view(images):
    assert plausible(np.eye(3), W, H)
    assert plausible(images.homography, W, H)


@pytest.mark.parametrize("homography", [
    np.array([[-1, 0, W], [0, 1, 0], [0, 0, 1]], np.float64),  # mirrored left-right
    np.array([[1, 0, 0], [0, -1, H], [0, 0, 1]], np.float64),  # mirrored top-bottom
    np.diag([0.01, 0.01, 1.0]),  # area ratio 1e-4
    np.diag([40.0, 40.0, 1.0]),  # area ratio 1.6e3
    np.array([[1, 0, 0], [0, 1, 0], [-2 / W, 0, 1]], np.float64),  # the horizon crosses the photo
    np.array([[1, 0, 0], [0, 1, 0], [-1 / W, 0, 1]], np.float64),  # the right edge goes to infinity
    np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]], np.float64),  # everything on a line
], ids=["mirror-x", "mirror-y", "tiny", "huge", "horizon", "infinity", "collinear"])
def test_plausible_rejects(homography):
    assert not plausible(homography, W, H)


def test_plausible_rejects_a_twisted_outline():
    # Maps the corners (0,0), (W,0), (W,H), (0,H) to a bow-tie: (0,0), (W,0), (0,H), (W,H).
    source = corners(W, H).astype(np.float32)
    twisted = cv2.getPerspectiveTransform(source, source[[0, 1, 3, 2]])
    assert not plausible(twisted, W, H)


def test_hull_coverage():
    rectangle = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
    assert hull_coverage(rectangle, W, H) == pytest.approx(1.0)
    assert hull_coverage(np.vstack([rectangle, [[10, 10], [200, 300]]]), W, H) == pytest.approx(1.0)
    assert hull_coverage(np.array([[0, 0], [W / 2, 0], [W / 2, H], [0, H]], np.float32), W, H) == pytest.approx(0.5)
    assert hull_coverage(np.array([[0, 0], [W, 0], [0, H]], np.float32), W, H) == pytest.approx(0.5)
    assert hull_coverage(rectangle[:2], W, H) == 0.0
    assert hull_coverage(rectangle * 3, W, H) == 1.0  # clipped


def test_hamming_threshold_counts_bits():
    assert hamming(np.uint64(0), np.uint64((1 << HAMMING_THRESHOLD) - 1)) == HAMMING_THRESHOLD
