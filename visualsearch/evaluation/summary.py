"""Raw measurements → the numbers `evaluate` prints and reports (a JSON-ready dict) and the curves behind them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..services import recognise
from . import metrics
from .runner import STAGE_NAMES, EvaluationResult

# Latency stages in the order a search runs them; the recognition ones only appear when they were measured.
STAGES = ("total", "decode", "embed", "local_features", "candidates_global", "candidates_words", "verify", "search",
          "assemble")  # fmt: skip
ALWAYS_SHOWN = ("total", "decode", "embed", "search", "assemble")
RECALL_CURVE_MAX_K = 50
EXACT_CURVE_INLIERS = range(5, 101)  # minimum inliers on the x axis of the "exact" calibration


@dataclass(frozen=True)
class Curves:
    """What the report plots: every (query, product) score with whether it is a match, and the curves."""

    pair_scores: np.ndarray
    pair_matches: np.ndarray
    pr: metrics.PRCurve
    recall_at: dict[int, float]  # k → recall@k, k = 1 … min(50, products)
    calibration: metrics.Calibration
    exact: metrics.ExactCurve | None = None  # the "exact" label over minimum inliers; None without recognition


def curves(result: EvaluationResult, target_precision: float) -> Curves:
    scores = _concat([q.scores for q in result.queries], np.float64)
    matches = _concat([q.matches for q in result.queries], bool)
    pr = metrics.precision_recall_curve(scores, matches, n_relevant=len(result.queries))  # one match per query
    ranks = [q.rank for q in result.queries]
    top_k = min(RECALL_CURVE_MAX_K, max(result.products, 1))
    recall_at = {k: metrics.recall_at_k(ranks, k) for k in range(1, top_k + 1)}
    return Curves(scores, matches, pr, recall_at, metrics.calibrate_threshold(pr, target_precision),
                  _exact_curve(result))


def _exact_curve(result: EvaluationResult) -> metrics.ExactCurve | None:
    if not result.recognition.ran:
        return None
    facts = [q.verified for q in result.queries if q.verified is not None]
    return metrics.exact_curve(
        [f.inliers for f in facts], [f.coverage for f in facts], [f.verified for f in facts],
        [f.right for f in facts], [f.runner_up_inliers for f in facts], margin=recognise.EXACT_MARGIN,
        min_coverage=recognise.EXACT_MIN_COVERAGE, min_inliers=EXACT_CURVE_INLIERS, n_queries=len(result.queries),
    )  # fmt: skip


def summarise(result: EvaluationResult, found: Curves) -> dict[str, Any]:
    """All the numbers, flat where possible so that `jq` and spreadsheets can take them as they are."""
    ranks = [q.rank for q in result.queries]
    calibration = found.calibration
    return {
        "dataset": result.dataset,
        "extractor": result.extractor_id,
        "backend": result.backend,
        "products": result.products,
        "images_indexed": result.indexed,
        "images_failed": result.failed_images,
        "queries": len(result.queries),
        "queries_failed": result.failed_queries,
        "k": result.k,
        **{f"recall@{k}": _round(metrics.recall_at_k(ranks, k)) for k in sorted({1, 5, 10, result.k})},
        "map": _round(metrics.mean_average_precision([q.matches for q in result.queries])),
        "ns_score": _round(result.ns_score),
        "ns_score_global": _round(result.ns_score_global),
        f"ann_recall@{result.k}": _round(result.ann_recall),
        "threshold": result.threshold,
        "empty_at_threshold": _round(metrics.empty_share(_top_scores(result), result.threshold)),
        "target_precision": calibration.target_precision,
        "recommended_threshold": _round(calibration.threshold, 6),
        "recommended_precision": _round(calibration.precision),
        "recommended_recall": _round(calibration.recall),
        "index_images_per_s": _round(result.indexed / result.index_seconds if result.index_seconds else None, 2),
        "index_seconds": _round(result.index_seconds, 2),
        "import_seconds": _round(result.import_seconds, 2),
        "images_embedded": result.embedded,
        "latency_ms": _latency(result),
        "search_limit": result.search_limit,
        "distractors": result.distractors,
        "distractors_skipped": result.distractors_skipped,
        **_recognition(result),
        "seconds": _round(result.seconds, 1),
    }


def _recognition(result: EvaluationResult) -> dict[str, Any]:
    """Recognition's numbers; None where it did not run (``recognition_note`` says why)."""
    stats, queries = result.recognition, result.queries
    ran = stats.ran
    exact = [q for q in queries if q.exact]
    per_photo = stats.seconds / stats.photos * 1000 if ran and stats.photos and stats.seconds is not None else None
    return {
        "recognition": ran,
        "recognition_note": stats.note or None,
        "vocabulary_words": stats.vocabulary_words,
        "vocabulary_photos": stats.vocabulary_photos,
        "vocabulary_seconds": _round(stats.vocabulary_seconds, 2) if ran else None,
        "local_features_photos": stats.photos if ran else None,
        "local_features_failed": stats.failed if ran else None,
        "local_features_seconds": _round(stats.seconds, 2) if ran else None,
        "local_features_ms_per_photo": _round(per_photo, 1),
        "local_features_bytes_per_photo": _round(stats.mean_bytes, 0),
        "local_features_keypoints_per_photo": _round(stats.mean_keypoints, 1),
        "candidates_global": stats.global_candidates if ran else None,
        "candidates_words": stats.word_candidates if ran else None,
        "candidates_exhaustive": stats.exhaustive if ran else None,
        **{f"stage_recall_{stage}": _round(_share(queries, lambda q: q.stages.get(stage, False)) if ran else None)
           for stage in STAGE_NAMES},  # fmt: skip
        "exact_rate": _round(len(exact) / len(queries) if ran and queries else None),
        "exact_precision": _round(sum(q.rank == 1 for q in exact) / len(exact) if ran and exact else None),
        "exact_min_inliers": recognise.EXACT_MIN_INLIERS if ran else None,
        "exact_margin": recognise.EXACT_MARGIN if ran else None,
        "exact_min_coverage": recognise.EXACT_MIN_COVERAGE if ran else None,
    }


def _share(queries, test) -> float | None:
    return sum(bool(test(q)) for q in queries) / len(queries) if queries else None


def _latency(result: EvaluationResult) -> dict[str, dict[str, float | None]]:
    latency = {}
    for stage in STAGES:
        values = [q.timings_ms[stage] for q in result.queries if stage in q.timings_ms]
        if not values and stage not in ALWAYS_SHOWN:
            continue
        latency[stage] = {f"p{q}": _round(metrics.percentile(values, q), 2) for q in (50, 95)}
    return latency


def _top_scores(result: EvaluationResult) -> np.ndarray:
    """The score deciding whether a query's result is empty: its best cosine similarity (results are no longer in
    cosine order when recognition ranks verified products first), +inf when an exact match is always shown."""
    return np.array([np.inf if q.exact else q.scores.max() if len(q.scores) else np.nan for q in result.queries],
                    dtype=np.float64)  # fmt: skip


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.array([], dtype=dtype)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
