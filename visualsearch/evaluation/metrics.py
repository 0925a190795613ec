"""Retrieval metrics as pure numpy functions: no Django, no models, so each is checked on hand-made rankings.

Conventions: a *rank* is 1-based, 0 means "not in the result list". Scores are cosine similarities.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

NS_TOP = 4  # UKBench: 4 photos per object, scored on the top 4
_NS_CHUNK = 128  # query rows per matrix product: bounds memory to 128 × photos scores


def first_relevant_rank(relevant: Sequence[bool]) -> int:
    """1-based position of the first relevant result, 0 when there is none."""
    hits = np.flatnonzero(np.asarray(relevant, dtype=bool))
    return int(hits[0]) + 1 if len(hits) else 0


def recall_at_k(ranks: Sequence[int], k: int) -> float:
    """Share of queries whose (single) relevant item is among the first ``k`` results."""
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    return float(np.mean((ranks >= 1) & (ranks <= k)))


def average_precision(relevant: Sequence[bool], n_relevant: int = 1) -> float:
    """Mean of precision@i over the positions i of relevant results, divided over all ``n_relevant`` items
    (missing ones count as 0). With one relevant item this is 1 / rank."""
    relevant = np.asarray(relevant, dtype=bool)
    if n_relevant < 1:
        return 0.0
    positions = np.flatnonzero(relevant) + 1
    precisions = np.arange(1, len(positions) + 1) / positions
    return float(precisions.sum() / n_relevant)


def mean_average_precision(rankings: Sequence[Sequence[bool]], n_relevant: int = 1) -> float:
    if not len(rankings):
        return 0.0
    return float(np.mean([average_precision(r, n_relevant) for r in rankings]))


def ns_score(
    vectors: np.ndarray,
    groups: Sequence[str],
    query_rows: Sequence[int],
    top: int = NS_TOP,
    *,
    fused: Sequence[Mapping[int, float]] | None = None,
) -> float:
    """UKBench N-S score: mean number of same-group photos among each query's ``top`` nearest photos, by exact
    cosine similarity over ``vectors`` (unit rows). The query counts as its own first hit, as in the benchmark.

    ``fused`` (one mapping per query: row → score) gives some rows another score in place of their cosine
    similarity: recognition's cosine + log(1 + inliers) / 6 of the photos it verified, so every photo is ranked by
    the same fused score (a photo without inliers by its cosine alone).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    groups = np.asarray(groups)
    query_rows = np.asarray(query_rows, dtype=np.int64)
    if not len(query_rows):
        return 0.0
    found = []
    for start in range(0, len(query_rows), _NS_CHUNK):
        chunk = query_rows[start : start + _NS_CHUNK]
        scores = vectors[chunk] @ vectors.T
        if fused is not None:
            scores = scores.astype(np.float64)  # fused scores can differ by less than float32 resolves
            for n, replaced in enumerate(fused[start : start + _NS_CHUNK]):
                rows = np.fromiter(replaced.keys(), dtype=np.int64, count=len(replaced))
                scores[n, rows] = np.fromiter(replaced.values(), dtype=np.float64, count=len(replaced))
        scores[np.arange(len(chunk)), chunk] = np.inf  # itself first, even against an identical duplicate
        nearest = np.argsort(-scores, axis=1, kind="stable")[:, :top]
        found.extend((groups[nearest] == groups[chunk][:, None]).sum(axis=1))
    return float(np.mean(found))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), or None for no values."""
    if not len(values):
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def empty_share(top_scores: Sequence[float], threshold: float) -> float:
    """Share of queries that would get no result at ``threshold``: their best score is below it (NaN = none)."""
    top_scores = np.asarray(top_scores, dtype=np.float64)
    if not len(top_scores):
        return 0.0
    return float(np.mean(~(top_scores >= threshold)))  # NaN compares False: counted as empty


@dataclass(frozen=True)
class PRCurve:
    """Precision and recall of the (query, product) pairs scoring at or above each threshold, highest first."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


def precision_recall_curve(scores: Sequence[float], matches: Sequence[bool], n_relevant: int) -> PRCurve:
    """One point per distinct score. ``n_relevant`` is the number of matching pairs there are in total
    (one per query here), so recall counts those the result lists missed too."""
    scores = np.asarray(scores, dtype=np.float64)
    matches = np.asarray(matches, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, matches = scores[order], matches[order]
    true_positives = np.cumsum(matches)
    last_of_tie = np.flatnonzero(np.append(scores[1:] != scores[:-1], True)) if len(scores) else np.array([], int)
    return PRCurve(
        thresholds=scores[last_of_tie],
        precision=true_positives[last_of_tie] / (last_of_tie + 1),
        recall=true_positives[last_of_tie] / max(n_relevant, 1),
    )


@dataclass(frozen=True)
class Calibration:
    target_precision: float
    threshold: float | None  # None: no threshold reaches the target
    precision: float | None
    recall: float | None


def calibrate_threshold(curve: PRCurve, target_precision: float) -> Calibration:
    """The lowest threshold at which precision stays ≥ the target: at it and at every higher threshold, so that
    raising the setting later (or rounding it up) can never drop below the target. None when even the top fails."""
    meets = curve.precision >= target_precision
    if not len(meets) or not meets[0]:
        return Calibration(target_precision, None, None, None)
    last = len(meets) - 1 if meets.all() else int(np.argmin(meets)) - 1
    return Calibration(
        target_precision, float(curve.thresholds[last]), float(curve.precision[last]), float(curve.recall[last])
    )


@dataclass(frozen=True)
class ExactCurve:
    """How the "exact" label would do at each minimum inlier count (the margin and coverage rules fixed)."""

    min_inliers: np.ndarray
    precision: np.ndarray  # share of labelled queries whose product is right; NaN where none is labelled
    labelled: np.ndarray  # share of all queries labelled exact


def exact_curve(
    inliers: Sequence[int],
    coverage: Sequence[float],
    verified: Sequence[bool],
    right: Sequence[bool],
    runner_up: Sequence[int],
    *,
    margin: float,
    min_coverage: float,
    min_inliers: Sequence[int],
    n_queries: int | None = None,
) -> ExactCurve:
    """One entry per query: the shortlist's product with the most verified inliers (its inliers, the share of
    its photo they cover, whether a homography verified, whether it is the query's product) and the runner-up
    product's inliers. A query is labelled exact at a minimum m when verified, inliers ≥ m, inliers ≥ margin ×
    runner-up and coverage ≥ min_coverage — the service's rule. ``n_queries`` (default: the entries) counts
    queries without a shortlist too, in the labelled share."""
    inliers = np.asarray(inliers, dtype=np.int64)
    coverage = np.asarray(coverage, dtype=np.float64)
    right = np.asarray(right, dtype=bool)
    base = (np.asarray(verified, dtype=bool) & (inliers >= margin * np.asarray(runner_up, dtype=np.float64))
            & (coverage >= min_coverage))  # fmt: skip
    thresholds = np.asarray(min_inliers, dtype=np.int64)
    total = len(inliers) if n_queries is None else n_queries
    precision, labelled = [], []
    for m in thresholds:
        chosen = base & (inliers >= m)
        count = int(chosen.sum())
        precision.append(float(right[chosen].mean()) if count else np.nan)
        labelled.append(count / total if total else 0.0)
    return ExactCurve(thresholds, np.array(precision, dtype=np.float64), np.array(labelled, dtype=np.float64))
