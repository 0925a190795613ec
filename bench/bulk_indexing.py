"""Bulk indexing throughput: `manage.py reindex` on N fresh ~1 MP photos against the bare batched model.

reindex = read file + decode + resize + CNN + store vector + load the index (embedded default), timed with the
model already built; the bare model is ``extractor.embed`` on pre-decoded 224×224 images in batches of 32. The
ratio says how much of the model's speed survives the whole pipeline; the phase table says where the rest goes.

    .venv/bin/python -m bench.bulk_indexing [--images 10000]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any

from . import dataset
from .common import fmt, log, machine_info, print_tables, quiet_tensorflow, ratio, table, times, write_json
from .dataset import Photo
from .site import Site

NAME = "bulk_indexing"
SAMPLE = 256  # photos for the bare-model measurements
BATCH = 32


@dataclass
class Catalog:
    """A populated, indexed benchmark site (the end-to-end benchmark reuses it)."""

    site: Site
    photos: list[Photo]
    populate: dict[str, Any]
    reindex: dict[str, Any]


def build_catalog(count: int, *, per_product: int = 4, batch_size: int = 64, label: str = "catalog") -> Catalog:
    """Fresh site → ``count`` photos created in bulk → ``reindex`` (timed)."""
    started = time.perf_counter()
    photos = dataset.photos(count)
    log(f"{count} photos ready ({time.perf_counter() - started:.0f} s, cached in {dataset.cache_root()})")
    site = Site.create(label)
    manifest = site.root / "manifest.json"
    manifest.write_text(json.dumps([p.__dict__ for p in photos]))
    populate = site.job("populate", "--manifest", str(manifest), "--per-product", str(per_product))
    log(f"populated {populate['images']} photos / {populate['products']} products; reindexing")
    reindex = site.job("reindex", "--batch-size", str(batch_size))
    log(f"reindex: {reindex['summary']}")
    return Catalog(site, photos, populate, reindex)


def bare_model(photos: list[Photo]) -> dict[str, float]:
    """Images/s of decode alone, of the CNN on 224×224 input, and of the CNN fed decoded 1 MP photos (+ resize)."""
    quiet_tensorflow()
    from PIL import Image

    from visualsearch.extractors.efficientnet_lite0 import EfficientNetLite0Extractor
    from visualsearch.imaging import decode_image

    started = time.perf_counter()
    decoded = [decode_image(open(p.path, "rb").read(), max_pixels=40_000_000) for p in photos]
    decode_s = time.perf_counter() - started
    ready = [image.resize((224, 224), Image.Resampling.BICUBIC) for image in decoded]
    extractor = EfficientNetLite0Extractor(batch_size=BATCH)
    extractor.embed(ready[:BATCH])  # builds the model and traces it
    started = time.perf_counter()
    extractor.embed(ready)
    network_s = time.perf_counter() - started
    started = time.perf_counter()
    extractor.embed(decoded)
    resize_network_s = time.perf_counter() - started
    n = len(photos)
    return {"images": n, "decode_per_s": n / decode_s, "model_per_s": n / network_s,
            "model_with_resize_per_s": n / resize_network_s, "extractor": extractor.id}  # fmt: skip


def summarise(catalog: Catalog, model: dict[str, float]) -> dict[str, Any]:
    reindex = catalog.reindex
    n = reindex["embeddings"]
    per_s = n / reindex["seconds"]
    return {
        "images": n,
        "reindex_s": reindex["seconds"],
        "reindex_per_s": per_s,
        "reindex_process_wall_s": reindex["process_wall_s"],
        "reindex_peak_rss_mb": reindex.get("peak_rss_mb"),
        "model_per_s": model["model_per_s"],
        "ratio_reindex_to_model": ratio(per_s, model["model_per_s"]),
        "phases_s": reindex["phases_s"],
        # A phase run in a background thread overlaps the others: it is not part of what "other" leaves over.
        "overlapping_phases": reindex.get("overlapping_phases", []),
        "other_s": reindex["seconds"] - sum(s for name, s in reindex["phases_s"].items()
                                            if name not in reindex.get("overlapping_phases", [])),
    }


def tables(summary: dict[str, Any], model: dict[str, float]) -> list[str]:
    model_rate = model["model_per_s"]
    rows = [
        ["bare model: embed() on pre-decoded 224×224, batches of 32", model_rate, 1000 / model_rate, times(1.0)],
        ["embed() on decoded 1 MP photos (+ resize to 224)", model["model_with_resize_per_s"],
         1000 / model["model_with_resize_per_s"], times(ratio(model["model_with_resize_per_s"], model_rate))],
        ["decode only (read + decode 1 MP JPEG)", model["decode_per_s"], 1000 / model["decode_per_s"],
         times(ratio(model["decode_per_s"], model_rate))],
        [f"reindex, {summary['images']:,} photos (decode+embed+store+index)", summary["reindex_per_s"],
         1000 / summary["reindex_per_s"], times(summary["ratio_reindex_to_model"])],
    ]  # fmt: skip
    main = table(f"Bulk indexing (EfficientNet-Lite0, embedded index; reindex process peak RSS "
                 f"{fmt(summary['reindex_peak_rss_mb'], 0)} MB)",
                 ["what", "images/s", "ms/image", "vs bare model"], rows)  # fmt: skip
    total = summary["reindex_s"]
    overlapping = summary.get("overlapping_phases", [])
    phases = {(f"{name}, in a prefetch thread (overlaps embed)" if name in overlapping else name): s
              for name, s in summary["phases_s"].items()}
    phases["other (queries, batching, bookkeeping)"] = summary["other_s"]
    phase_rows = [[name, s, 100 * s / total, 1000 * s / summary["images"]] for name, s in phases.items()]
    breakdown = table(f"Where reindex time goes ({fmt(total)} s)", ["phase", "seconds", "% of reindex", "ms/image"],
                      phase_rows)  # fmt: skip
    return [main, breakdown]


def run(*, images: int, keep_site: bool = False) -> tuple[dict[str, Any], Catalog]:
    catalog = build_catalog(images)
    model = bare_model(catalog.photos[:SAMPLE])
    summary = summarise(catalog, model)
    payload = {"benchmark": NAME, "machine": machine_info(), "config": {"images": images, "batch": BATCH},
               "summary": summary, "bare_model": model, "populate": catalog.populate,
               "reindex": catalog.reindex, "tables": tables(summary, model)}  # fmt: skip
    if not keep_site:
        catalog.site.remove()
    return payload, catalog


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_indexing", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="fresh photos to index (default 10000)")
    args = parser.parse_args(argv)
    payload, _ = run(images=args.images)
    print_tables(payload["tables"])
    print(f"\nwritten {write_json(NAME, payload)}")


if __name__ == "__main__":
    main()
