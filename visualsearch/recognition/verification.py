"""Geometric verification: does a candidate photo show the same flat-ish object as the query, under a homography?

Correspondences come from shared visual words whose Hamming-embedding signatures are close — no descriptors are
kept or matched. A robust homography (``cv2.USAC_MAGSAC``: ~50× faster than plain RANSAC on a pair that does not
match) is fitted from the candidate photo into the query; the photo is verified when enough correspondences agree
with a plausible transform (non-degenerate, orientation-preserving, convex) and they cover a real part of it.
A homography, not a similarity: perspective from a phone held at an angle is the normal case.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .vocabulary import hamming

HAMMING_THRESHOLD = 24  # of 64 bits: Jégou et al.'s operating point for HE-64
PAIRS_PER_FEATURE = 2  # a query feature may vote for at most this many candidate features (its closest ones)
BURST_LIMIT = 16  # a word repeated more often than this in a photo (text, barcodes, patterns) is skipped
MIN_CORRESPONDENCES = 8  # fewer cannot give a trustworthy homography
REPROJECTION_PX = 6.0  # MAGSAC threshold, in query pixels at the analysed size (~800 px long side)
MAX_ITERATIONS = 2000
MAX_SIDE_RATIO = 8.0  # opposite sides of the projected outline: a steeper view than this is a chance fit


@dataclass(frozen=True)
class PhotoFeatures:
    """What verification needs of one photo. ``keypoints`` float32 (n, 4) (x, y, scale, angle);
    ``words`` int64 (n,); ``signatures`` uint64 (n,); ``width``/``height`` of the analysed image."""

    keypoints: np.ndarray
    words: np.ndarray
    signatures: np.ndarray
    width: int
    height: int
    # A query with several words per feature (see Vocabulary.assign_multiple) repeats its rows once per word;
    # its candidate search uses only each feature's nearest word, given here.
    search_words: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.words)


@dataclass(frozen=True)
class Verification:
    """``inliers``: correspondences consistent with the homography, counted once per feature on both sides;
    ``coverage``: share of the candidate photo's area spanned by its inliers (convex hull), 0–1;
    ``homography``: 3×3 candidate → query, or None when nothing verified."""

    inliers: int = 0
    coverage: float = 0.0
    homography: np.ndarray | None = None

    @property
    def verified(self) -> bool:
        return self.homography is not None


NOT_VERIFIED = Verification()


def correspondences(query: PhotoFeatures, candidate: PhotoFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (query rows, candidate rows) of features sharing a word with close signatures, int64 (m,) each."""
    if not len(query) or not len(candidate):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(candidate.words, kind="stable")
    sorted_words = candidate.words[order]
    lo = np.searchsorted(sorted_words, query.words, "left")
    counts = np.searchsorted(sorted_words, query.words, "right") - lo
    counts[counts > BURST_LIMIT] = 0
    total = int(counts.sum())
    if not total:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    q_rows = np.repeat(np.arange(len(query)), counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    c_rows = order[starts + np.arange(total)]
    distance = hamming(query.signatures[q_rows], candidate.signatures[c_rows])
    close = distance <= HAMMING_THRESHOLD
    q_rows, c_rows, distance = q_rows[close], c_rows[close], distance[close]
    return _closest_per_feature(q_rows, c_rows, distance)


def correspondences_many(query: PhotoFeatures, candidates: list[PhotoFeatures]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``correspondences(query, c)`` for every candidate of a shortlist, with the same pairs in the same order, in one
    pass: the candidates' features are sorted by (word, candidate, row) together and the query searched once, so a
    60-photo shortlist costs a dozen numpy calls instead of a dozen per photo (their overhead dominated)."""
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    sizes = np.array([len(c) for c in candidates], dtype=np.int64)
    if not len(query) or not sizes.sum():
        return [empty] * len(candidates)
    owners = np.repeat(np.arange(len(candidates)), sizes)
    rows = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    words = np.concatenate([np.asarray(c.words, dtype=np.int64) for c in candidates])
    signatures = np.concatenate([c.signatures for c in candidates])
    # Sorted by (word, candidate, row): one unique int64 key, whose sorted values give the order back (a plain sort
    # of values is ~15× faster than numpy's stable argsort of int64, which was the most expensive step here).
    width = int(sizes.max())
    keys = np.sort((words * len(candidates) + owners) * width + rows)
    order = (np.cumsum(sizes) - sizes)[keys // width % len(candidates)] + keys % width
    keep = order[~_in_bursts(words[order], owners[order])]
    words, owners, rows, signatures = words[keep], owners[keep], rows[keep], signatures[keep]
    lo = np.searchsorted(words, query.words, "left")
    counts = np.searchsorted(words, query.words, "right") - lo
    total = int(counts.sum())
    if not total:
        return [empty] * len(candidates)
    q_rows = np.repeat(np.arange(len(query)), counts)
    at = np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(total)
    distance = hamming(query.signatures[q_rows], signatures[at])
    close = distance <= HAMMING_THRESHOLD
    q_rows, at, distance = q_rows[close], at[close], distance[close]
    # Per candidate and query feature, its PAIRS_PER_FEATURE closest partners (ties by candidate row).
    order = np.argsort(((owners[at] * len(query) + q_rows) * 65 + distance) * width + rows[at])  # unique keys
    q_rows, at = q_rows[order], at[order]
    group = owners[at] * len(query) + q_rows
    nearest = np.arange(len(group)) - np.searchsorted(group, group, "left") < PAIRS_PER_FEATURE
    q_rows, at = q_rows[nearest], at[nearest]
    bounds = np.searchsorted(owners[at], np.arange(len(candidates) + 1))
    return [(q_rows[a:b], rows[at[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])]


def _in_bursts(words: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Mask of sorted features whose word occurs more than BURST_LIMIT times in their own photo."""
    starts = np.flatnonzero(np.r_[True, (words[1:] != words[:-1]) | (owners[1:] != owners[:-1])])
    lengths = np.diff(np.r_[starts, len(words)])
    return np.repeat(lengths > BURST_LIMIT, lengths)


def inlier_bound(query: PhotoFeatures, pairs: tuple[np.ndarray, np.ndarray]) -> int:
    """The most inliers these correspondences could give (distinct query locations): verifying candidates in
    decreasing order of it allows stopping once the best verified one beats every bound left."""
    return _distinct_points(query.keypoints[np.unique(pairs[0]), :2])


def inlier_bounds(query: PhotoFeatures, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """``inlier_bound`` of each candidate's pairs, with the query's locations labelled once, not per candidate."""
    if not len(query):
        return [0] * len(pairs)
    _, location = np.unique(_pixel_keys(query.keypoints[:, :2]), return_inverse=True)
    # Distinct (candidate, location) keys of all candidates in one pass, then counted per candidate.
    sizes = [len(q_rows) for q_rows, _ in pairs]
    owners = np.repeat(np.arange(len(pairs)), sizes)
    all_rows = np.concatenate([q_rows for q_rows, _ in pairs]) if pairs else np.empty(0, np.int64)
    locations = int(location.max()) + 1
    distinct = np.unique(owners * locations + location[all_rows]) // locations
    return np.bincount(distinct, minlength=len(pairs)).tolist()


def _closest_per_feature(q_rows, c_rows, distance) -> tuple[np.ndarray, np.ndarray]:
    """Keep each query feature's ``PAIRS_PER_FEATURE`` closest partners (ties by candidate row: deterministic)."""
    order = np.lexsort((c_rows, distance, q_rows))
    q_rows, c_rows = q_rows[order], c_rows[order]
    first = np.searchsorted(q_rows, q_rows, "left")
    keep = np.arange(len(q_rows)) - first < PAIRS_PER_FEATURE
    return q_rows[keep], c_rows[keep]


def verify(query: PhotoFeatures, candidate: PhotoFeatures, *, seed: int = 0,
           pairs: tuple[np.ndarray, np.ndarray] | None = None) -> Verification:
    """Fit candidate → query and judge it (deterministic for a seed); ``pairs``: precomputed correspondences."""
    q_rows, c_rows = correspondences(query, candidate) if pairs is None else pairs
    if len(q_rows) < MIN_CORRESPONDENCES:
        return NOT_VERIFIED
    source = candidate.keypoints[c_rows, :2].astype(np.float32)
    target = query.keypoints[q_rows, :2].astype(np.float32)
    cv2.setRNGSeed(seed)
    homography, mask = cv2.findHomography(source, target, cv2.USAC_MAGSAC, REPROJECTION_PX,
                                          maxIters=MAX_ITERATIONS, confidence=0.999)
    if homography is None or mask is None:
        return NOT_VERIFIED
    inlier = mask.ravel().astype(bool)
    count = min(_distinct_points(target[inlier]), _distinct_points(source[inlier]))
    if count < MIN_CORRESPONDENCES or not plausible(homography, candidate.width, candidate.height):
        return NOT_VERIFIED
    return Verification(count, hull_coverage(source[inlier], candidate.width, candidate.height), homography)


def _distinct_points(points: np.ndarray) -> int:
    """Inliers counted by location (to the pixel), not by feature: SIFT gives one location several orientations,
    and four physical points always fit some homography however many rows they fill."""
    return len(np.unique(_pixel_keys(points))) if len(points) else 0


def _pixel_keys(points: np.ndarray) -> np.ndarray:
    """One int64 per point's pixel (x, y rounded): a 1-d unique is several times faster than a row-wise one."""
    pixels = np.round(points).astype(np.int64) + (1 << 24)  # non-negative for any sane coordinate
    return (pixels[:, 0] << 26) | pixels[:, 1]


def plausible(homography: np.ndarray, width: int, height: int) -> bool:
    """The candidate photo's outline maps to a convex, orientation-preserving quadrilateral of sane size."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    projected = cv2.perspectiveTransform(corners[None], homography.astype(np.float64))[0]
    if not np.all(np.isfinite(projected)):
        return False
    edges = np.roll(projected, -1, axis=0) - projected
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not (np.all(turns > 0) or np.all(turns < 0)):
        return False  # folded or twisted: points on a line or a degenerate fit
    if np.all(turns < 0):
        return False  # mirrored: a reflection is not a view of the same printed surface
    area_ratio = abs(_polygon_area(projected)) / float(width * height)
    if not 1e-3 < area_ratio < 1e3:
        return False
    # A view of a flat product foreshortens it, but never into a sliver: opposite sides keep comparable lengths.
    sides = np.linalg.norm(edges, axis=1)
    return bool(max(sides[0], sides[2]) <= MAX_SIDE_RATIO * min(sides[0], sides[2])
                and max(sides[1], sides[3]) <= MAX_SIDE_RATIO * min(sides[1], sides[3]))


def hull_coverage(points: np.ndarray, width: int, height: int) -> float:
    """Share of the photo's area inside the convex hull of ``points`` (float32 (n, 2))."""
    if len(points) < 3:
        return 0.0
    hull = cv2.convexHull(points.astype(np.float32))
    return float(min(1.0, cv2.contourArea(hull) / float(width * height)))


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
