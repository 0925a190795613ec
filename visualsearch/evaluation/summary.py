"""Raw measurements → the numbers `evaluate` prints and reports (a JSON-ready dict) and the curves behind them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics
from .runner import EvaluationResult

STAGES = ("total", "decode", "embed", "search", "assemble")
RECALL_CURVE_MAX_K = 50


@dataclass(frozen=True)
class Curves:
    """What the report plots: every (query, product) score with whether it is a match, and the curves."""

    pair_scores: np.ndarray
    pair_matches: np.ndarray
    pr: metrics.PRCurve
    recall_at: dict[int, float]  # k → recall@k, k = 1 … min(50, products)
    calibration: metrics.Calibration


def curves(result: EvaluationResult, target_precision: float) -> Curves:
    scores = _concat([q.scores for q in result.queries], np.float64)
    matches = _concat([q.matches for q in result.queries], bool)
    pr = metrics.precision_recall_curve(scores, matches, n_relevant=len(result.queries))  # one match per query
    ranks = [q.rank for q in result.queries]
    top_k = min(RECALL_CURVE_MAX_K, max(result.products, 1))
    recall_at = {k: metrics.recall_at_k(ranks, k) for k in range(1, top_k + 1)}
    return Curves(scores, matches, pr, recall_at, metrics.calibrate_threshold(pr, target_precision))


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
        "seconds": _round(result.seconds, 1),
    }


def _latency(result: EvaluationResult) -> dict[str, dict[str, float | None]]:
    latency = {}
    for stage in STAGES:
        values = [q.timings_ms[stage] for q in result.queries if stage in q.timings_ms]
        latency[stage] = {f"p{q}": _round(metrics.percentile(values, q), 2) for q in (50, 95)}
    return latency


def _top_scores(result: EvaluationResult) -> np.ndarray:
    return np.array([q.scores[0] if len(q.scores) else np.nan for q in result.queries], dtype=np.float64)


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.array([], dtype=dtype)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)
