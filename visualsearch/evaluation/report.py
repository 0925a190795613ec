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

from .summary import STAGES, Curves

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
    if s["ns_score"] is not None:
        lines.append(f"N-S score {s['ns_score']:.3f} / 4 (exact image-level ranking over the stored vectors)")
    if s[f"ann_recall@{k}"] is not None:
        lines.append(f"ANN recall@{k} {s[f'ann_recall@{k}']:.4f} (against exact search on the same vectors)")
    lines += [
        f"empty result at the configured threshold {s['threshold']}: {s['empty_at_threshold']:.1%} of queries",
        _recommendation(s),
        f"indexing {s['index_images_per_s']} photos/s ({s['images_indexed']} in {s['index_seconds']} s, "
        f"{s['images_embedded']} through the model); import {s['import_seconds']} s",
        f"latency ms p50/p95 (limit {s['search_limit']}): " + ", ".join(
            f"{stage} {s['latency_ms'][stage]['p50']}/{s['latency_ms'][stage]['p95']}" for stage in STAGES
        ),
    ]
    if s["images_failed"] or s["queries_failed"]:
        lines.append(f"unreadable: {s['images_failed']} gallery photos, {s['queries_failed']} queries (left out)")
    lines.append(f"took {s['seconds']} s")
    return lines


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
    }


# --- plots -------------------------------------------------------------------------------------------------------


def _plots(summary: dict[str, Any], found: Curves) -> dict[str, str]:
    return {
        "Scores of matching and non-matching (query, product) pairs": _png(_histogram, summary, found),
        "Precision and recall over thresholds": _png(_precision_recall, summary, found),
        "Recall@k": _png(_recall_at_k, summary, found),
    }


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
    "exact brute-force ranking over the dataset's stored vectors, the query counting as its own first hit.",
)


def _html(summary: dict[str, Any], plots: dict[str, str]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(_cell(value))}</td></tr>" for key, value in summary.items()
    )
    figures = "".join(
        f'<figure><img alt="{html.escape(title)}" src="{uri}"><figcaption>{html.escape(title)}</figcaption></figure>'
        for title, uri in plots.items()
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in _NOTES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Visual search evaluation</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1040px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}th,td{{padding:2px 12px;border-bottom:1px solid #ddd;text-align:left}}
img{{max-width:100%}}figure{{margin:2em 0}}</style></head>
<body><h1>Visual search evaluation</h1>
<p>{html.escape(_recommendation(summary))}</p>
<table>{rows}</table>{figures}<ul>{notes}</ul></body></html>
"""


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict) else "—" if value is None else str(value)
