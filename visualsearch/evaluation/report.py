"""Present an evaluation: console lines, ``report.json`` and a self-contained ``report.html`` with PNG plots."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # the object API renders with Agg and never touches pyplot's global state

from .summary import Curves

_CURVE_POINTS = 200  # thresholds kept in report.json; the plots use them all
MATCH, OTHER, CONFIGURED, RECOMMENDED = "tab:green", "tab:red", "tab:gray", "tab:blue"


def console_lines(s: dict[str, Any]) -> list[str]:
    """The human-readable summary; the command prints the JSON after these, as the last line."""
    k = s["k"]
    recalls = "  ".join(f"{key} {value:.4f}" for key, value in s.items() if key.startswith("recall@"))
    lines = [
        f"evaluate: {s['queries']} queries against {s['products']} products ({s['images_indexed']} photos); "
        f"extractor {s['extractor']}, index {s['backend']}",
        f"{recalls}  mAP {s['map']:.4f}",
    ]
    if s["ns_score"] is not None and s["recognition"]:
        lines.append(f"N-S score {s['ns_score']:.3f} / 4 (image-level, every photo by cosine + log(1 + inliers) / 6)"
                     f"; global vectors alone {s['ns_score_global']:.3f}")
    elif s["ns_score"] is not None:
        lines.append(f"N-S score {s['ns_score']:.3f} / 4 (exact image-level ranking over the stored vectors)")
    lines += _recognition_lines(s)
    if s[f"ann_recall@{k}"] is not None:
        lines.append(f"ANN recall@{k} {s[f'ann_recall@{k}']:.4f} (against exact search on the same vectors)")
    lines += [
        f"empty result at the configured threshold {s['threshold']}: {s['empty_at_threshold']:.1%} of queries",
        _recommendation(s),
        f"indexing {s['index_images_per_s']} photos/s ({s['images_indexed']} in {s['index_seconds']} s, "
        f"{s['images_embedded']} through the model); import {s['import_seconds']} s",
        f"latency ms p50/p95 (limit {s['search_limit']}): " + ", ".join(
            f"{stage} {times['p50']}/{times['p95']}" for stage, times in s["latency_ms"].items()
        ),
    ]
    if s["distractors"] or s["distractors_skipped"]:
        lines.append(f"distractors: {s['distractors']} extra gallery photos, each its own product, never relevant"
                     + (f" ({s['distractors_skipped']} skipped: unreadable or a copy of a dataset photo)"
                        if s["distractors_skipped"] else ""))
    if s["images_failed"] or s["queries_failed"]:
        lines.append(f"unreadable: {s['images_failed']} gallery photos, {s['queries_failed']} queries (left out)")
    lines.append(f"took {s['seconds']} s")
    return lines


def _recognition_lines(s: dict[str, Any]) -> list[str]:
    if not s["recognition"]:
        return [f"recognition {s['recognition_note']}"] if s["recognition_note"] else []
    exact = (f"exact: {s['exact_rate']:.1%} of queries labelled exact, precision "
             + ("— (none labelled)" if s["exact_precision"] is None else f"{s['exact_precision']:.4f}")
             + f" (min inliers {s['exact_min_inliers']}, margin {s['exact_margin']}, "
               f"coverage {s['exact_min_coverage']})")  # fmt: skip
    exhaustive = " (a small index: every photo is a candidate)" if s["candidates_exhaustive"] else ""
    return [
        f"stage recall: global top-{s['candidates_global']} {s['stage_recall_global']:.4f}, visual words "
        f"top-{s['candidates_words']} {s['stage_recall_words']:.4f}, union {s['stage_recall_union']:.4f}, "
        f"verified {s['stage_recall_verified']:.4f}, final recall@1 {s['recall@1']:.4f}{exhaustive}",
        exact,
        f"recognition: vocabulary of {s['vocabulary_words']} words trained on {s['vocabulary_photos']} gallery "
        f"photos in {s['vocabulary_seconds']} s; local features of {s['local_features_photos']} photos in "
        f"{s['local_features_seconds']} s ({s['local_features_ms_per_photo']} ms/photo, "
        f"{_number(s['local_features_bytes_per_photo'])} bytes and "
        f"{_number(s['local_features_keypoints_per_photo'])} keypoints/photo"
        + (f", {s['local_features_failed']} failed" if s["local_features_failed"] else "") + ")",
    ]


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _recommendation(s: dict[str, Any]) -> str:
    target = s["target_precision"]
    if s["recommended_threshold"] is None:
        return f"recommended threshold: none; no threshold keeps precision ≥ {target}"
    return (f"recommended threshold for precision ≥ {target}: {s['recommended_threshold']:.4f} "
            f"(precision {s['recommended_precision']:.4f}, recall {s['recommended_recall']:.4f})")


def write_report(directory: str | Path, summary: dict[str, Any], found: Curves) -> list[Path]:
    """Write report.json and report.html into ``directory`` (created if missing); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = {"summary": summary, "curves": _curve_data(found)}
    json_path, html_path = directory / "report.json", directory / "report.html"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(_html(summary, _plots(summary, found)), encoding="utf-8")
    return [json_path, html_path]


def _curve_data(found: Curves) -> dict[str, Any]:
    pr = found.pr
    keep = np.unique(np.linspace(0, len(pr.thresholds) - 1, min(_CURVE_POINTS, len(pr.thresholds))).astype(int))
    return {
        "precision_recall": [
            {"threshold": round(float(pr.thresholds[i]), 6), "precision": round(float(pr.precision[i]), 6),
             "recall": round(float(pr.recall[i]), 6)} for i in keep
        ],  # fmt: skip
        "recall_at_k": {str(k): round(v, 6) for k, v in found.recall_at.items()},
        "pairs": {"matching": int(found.pair_matches.sum()), "non_matching": int((~found.pair_matches).sum())},
        "exact_calibration": None if found.exact is None else [
            {"min_inliers": int(m), "precision": None if np.isnan(p) else round(float(p), 6),
             "labelled": round(float(r), 6)}
            for m, p, r in zip(found.exact.min_inliers, found.exact.precision, found.exact.labelled, strict=True)
        ],  # fmt: skip
    }


# --- plots -------------------------------------------------------------------------------------------------------


def _plots(summary: dict[str, Any], found: Curves) -> dict[str, str]:
    plots = {
        "Scores of matching and non-matching (query, product) pairs": _png(_histogram, summary, found),
        "Precision and recall over thresholds": _png(_precision_recall, summary, found),
        "Recall@k": _png(_recall_at_k, summary, found),
    }
    if found.exact is not None:
        title = (f"Calibration of \"exact\": precision and share of queries labelled exact over the minimum inliers "
                 f"(margin {summary['exact_margin']}, coverage ≥ {summary['exact_min_coverage']})")
        plots[title] = _png(_exact_calibration, summary, found)
    return plots


def _png(draw, summary: dict[str, Any], found: Curves) -> str:
    figure = Figure(figsize=(10, 4), layout="constrained")
    draw(figure, summary, found)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _histogram(figure: Figure, summary: dict[str, Any], found: Curves) -> None:
    # Densities: non-matching pairs outnumber matching ones by the number of products, so counts would hide them.
    axes = figure.subplots()
    bins = np.linspace(min(-0.1, found.pair_scores.min(initial=0)), 1.0, 80)
    groups = (("matching", found.pair_matches, MATCH), ("non-matching", ~found.pair_matches, OTHER))
    for label, chosen, colour in groups:
        axes.hist(found.pair_scores[chosen], bins=bins, density=True, alpha=0.5, color=colour,
                  label=f"{label} ({int(chosen.sum())})")  # fmt: skip
    _threshold_lines(axes, summary)
    axes.set(xlabel="cosine similarity", ylabel="density")
    axes.legend()


def _precision_recall(figure: Figure, summary: dict[str, Any], found: Curves) -> None:
    by_threshold, pr_axes = figure.subplots(1, 2)
    pr = found.pr
    by_threshold.plot(pr.thresholds, pr.precision, label="precision", color=MATCH)
    by_threshold.plot(pr.thresholds, pr.recall, label="recall", color=OTHER)
    by_threshold.axhline(summary["target_precision"], color=RECOMMENDED, linestyle=":", linewidth=1)
    _threshold_lines(by_threshold, summary)
    by_threshold.set(xlabel="threshold", ylim=(0, 1.02))
    by_threshold.legend()
    pr_axes.plot(pr.recall, pr.precision, color=MATCH)
    if summary["recommended_threshold"] is not None:
        pr_axes.plot(summary["recommended_recall"], summary["recommended_precision"], "o", color=RECOMMENDED,
                     label=f"recommended {summary['recommended_threshold']:.3f}")  # fmt: skip
        pr_axes.legend()
    pr_axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))


def _recall_at_k(figure: Figure, summary: dict[str, Any], found: Curves) -> None:
    axes = figure.subplots()
    ks = list(found.recall_at)
    axes.plot(ks, [found.recall_at[k] for k in ks], marker=".", color=MATCH)
    axes.set(xlabel="k (products shown)", ylabel="recall@k", ylim=(0, 1.02))
    axes.grid(alpha=0.3)


def _exact_calibration(figure: Figure, summary: dict[str, Any], found: Curves) -> None:
    axes = figure.subplots()
    curve = found.exact
    axes.plot(curve.min_inliers, curve.precision, label="precision of \"exact\"", color=MATCH)
    axes.plot(curve.min_inliers, curve.labelled, label="share of queries labelled exact", color=OTHER)
    configured = summary["exact_min_inliers"]
    axes.axvline(configured, color=CONFIGURED, linestyle="--", label=f"configured {configured}")
    axes.axhline(0.99, color=RECOMMENDED, linestyle=":", linewidth=1, label="precision 0.99")
    axes.set(xlabel="minimum inliers", xlim=(curve.min_inliers[0], curve.min_inliers[-1]), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend()


def _threshold_lines(axes, summary: dict[str, Any]) -> None:
    axes.axvline(summary["threshold"], color=CONFIGURED, linestyle="--", label=f"configured {summary['threshold']}")
    if summary["recommended_threshold"] is not None:
        axes.axvline(summary["recommended_threshold"], color=RECOMMENDED, linestyle="--",
                     label=f"recommended {summary['recommended_threshold']:.3f}")  # fmt: skip


# --- HTML --------------------------------------------------------------------------------------------------------

_NOTES = (
    "Recall@k, mAP and the threshold curves are product-level, from the same search service the API uses: one "
    "result per product, ranked by its best photo, nothing cut by a threshold. A pair is one query with one "
    "returned product; it matches when the product is the query's group.",
    "Precision at a threshold is the share of pairs scoring at or above it that match; the recommended threshold "
    "is the lowest at which precision stays at or above the target for it and every higher threshold.",
    "The N-S score (UKBench) is image-level: the search service groups by product, so it is computed from an "
    "exact brute-force ranking over the dataset's stored vectors, the query counting as its own first hit. With "
    "recognition, every photo ranks by its fused score, cosine + log(1 + inliers) / 6 (the cosine alone for "
    "photos it did not verify); ns_score_global is the vectors-only ranking.",
    "Stage recall: the share of queries whose product is among the global kNN's top-N products, the visual-word "
    "index's top-M photos, their union (the shortlist that is verified), and the products verified by a "
    "homography; the final stage is recall@1 of the results shown. Cosine scores and thresholds above are the "
    "global ones; recognised products rank first whatever their cosine.",
    "\"Exact\" precision is the share of queries labelled exact whose first result is their product; the "
    "calibration plot replays the service's rule (enough inliers, a margin over the next product's inliers, "
    "inliers covering part of the photo) for other minimum inlier counts, from each query's verified shortlist.",
    "Distractors are extra gallery photos, each a product of its own: they never count as relevant, and they "
    "take part in every ranking (N-S included), so they can only lower the numbers.",
)
_STAGE_ROWS = (("global", "candidates_global", "global kNN top-{} products"),
               ("words", "candidates_words", "visual words top-{} photos"),
               ("union", None, "union (shortlist)"), ("verified", None, "verified by a homography"))


def _html(summary: dict[str, Any], plots: dict[str, str]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(_cell(value))}</td></tr>" for key, value in summary.items()
    )
    figures = "".join(
        f'<figure><img alt="{html.escape(title)}" src="{uri}"><figcaption>{html.escape(title)}</figcaption></figure>'
        for title, uri in plots.items()
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in _NOTES)
    stages = _stage_table(summary)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Visual search evaluation</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1040px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{padding:2px 12px;border-bottom:1px solid #ddd;text-align:left}}
img{{max-width:100%}}figure{{margin:2em 0}}</style></head>
<body><h1>Visual search evaluation</h1>
<p>{html.escape(_recommendation(summary))}</p>
{stages}<table>{rows}</table>{figures}<ul>{notes}</ul></body></html>
"""


def _stage_table(summary: dict[str, Any]) -> str:
    """Recall at each stage of recognition, and what "exact" is worth; a note when recognition did not run."""
    if not summary.get("recognition"):
        note = summary.get("recognition_note")
        return f"<p>Recognition {html.escape(note)}.</p>" if note else ""
    rows = [(label.format(summary[size]) if size else label, summary[f"stage_recall_{stage}"])
            for stage, size, label in _STAGE_ROWS]
    rows.append(("final: first result (recall@1)", summary["recall@1"]))
    body = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(_cell(value))}</td></tr>"
                   for label, value in rows)  # fmt: skip
    exact = (f"exact: {_cell(summary['exact_rate'])} of queries labelled exact, precision "
             f"{_cell(summary['exact_precision'])} (min inliers {summary['exact_min_inliers']})")
    exhaustive = ("<p>The index is small enough for recognition to verify every photo that shares a visual word "
                  "with the query: the candidate stages are not a shortlist here.</p>"
                  if summary["candidates_exhaustive"] else "")  # fmt: skip
    return (f"<h2>Recall at each stage</h2><table><tr><th>stage</th><th>recall</th></tr>{body}</table>{exhaustive}"
            f"<p>{html.escape(exact)}</p><h2>All numbers</h2>")


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict) else "—" if value is None else str(value)
