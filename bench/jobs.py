"""Work that runs inside a benchmark site's Django process: ``python -m bench.jobs <job> --out result.json ...``.

Started by :meth:`bench.site.Site.job` with the site's environment (temp var dir, chosen extractor and backend).

- ``populate``: products and photos in bulk with the ORM. ``bulk_create`` skips ``save()`` and signals, so the
  content hash and size come from the photo manifest and the files are hard-linked into MEDIA_ROOT here.
- ``reindex``: build the model first (not timed: a server or worker has it loaded already), then time
  ``manage.py reindex`` run through ``call_command``, with each phase timed by wrapping the functions it calls.
  ``--per-photo`` also records every call of the local-feature steps (decode, resize, SIFT, words, signatures,
  pack) while photos are analysed for storage, for per-photo percentiles.
- ``train-vocabulary``: ``recognition.train_vocabulary`` on the catalog (not activated: the next ``reindex``
  puts it live, as ``manage.py train_vocabulary`` does), optionally sized as production would size it for a
  larger catalog (see :mod:`bench.recognition`).
- ``synthesize``: grow a catalog of real, indexed photos to N photos with synthetic ones derived from the real
  stored vectors and local features (see :mod:`bench.recognition` for the recipe).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import PhaseTimer, quiet_tensorflow


def populate(manifest: Path, per_product: int) -> dict[str, Any]:
    from django.conf import settings

    from catalog.models import IndexStatus, Product, ProductImage

    rows = json.loads(manifest.read_text())
    started = time.perf_counter()
    count = (len(rows) + per_product - 1) // per_product
    products = Product.objects.bulk_create(
        [Product(relation_id=f"bench-{i:06d}", title=f"Bench product {i}", category=f"cat{i % 10}", price="9.90")
         for i in range(count)],  # fmt: skip
        batch_size=1000,
    )
    images = []
    for i, row in enumerate(rows):
        product = products[i // per_product]
        name = f"products/{product.relation_id}/{Path(row['path']).name}"
        _link(Path(row["path"]), Path(settings.MEDIA_ROOT) / name)
        images.append(ProductImage(product=product, image=name, sha256=row["sha256"], width=row["width"],
                                   height=row["height"], position=i % per_product,
                                   index_status=IndexStatus.PENDING))  # fmt: skip
    ProductImage.objects.bulk_create(images, batch_size=1000)
    return {"products": len(products), "images": len(images), "seconds": time.perf_counter() - started}


def _link(source: Path, target: Path) -> None:
    """A hard link costs no copy and no disk; fall back to copying across file systems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


DECODE_PHASE = "decode (read + decode file)"


def reindex(batch_size: int, per_photo: bool = False) -> dict[str, Any]:
    from django.core.management import call_command
    from PIL import Image

    from catalog.models import ProductImage
    from visualsearch.models import ImageEmbedding
    from visualsearch.registry import get_extractor, get_index

    started = time.perf_counter()
    extractor, index = get_extractor(), get_index()
    extractor.embed_one(Image.new("RGB", (224, 224)))  # build the model outside the timed part
    warm_up_s = time.perf_counter() - started
    phases = _instrument(extractor, index)
    samples = _instrument_local_features() if per_photo else None
    stdout = io.StringIO()
    started = time.perf_counter()
    call_command("reindex", batch_size=batch_size, verbosity=0, stdout=stdout)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "warm_up_s": warm_up_s,
        "phases_s": phases.seconds,
        "phase_calls": phases.calls,
        "summary": stdout.getvalue().strip(),
        "images": ProductImage.objects.count(),
        "embeddings": ImageEmbedding.objects.filter(extractor_id=extractor.id).count(),
        "indexed": index.count(),
        "extractor": extractor.id,
        "index": type(index).__name__,
        "batch_size": batch_size,
        "per_photo_s": samples.samples if samples is not None else None,
        "analysis_workers": _analysis_workers(),
        "overlapping_phases": [DECODE_PHASE] if _pipelined() else [],
    }


def _pipelined() -> bool:
    from visualsearch.services import embedding

    return hasattr(embedding, "embed_pipelined")


def _analysis_workers() -> int | None:
    from django.conf import settings

    return settings.VISUALSEARCH.get("RECOGNITION", {}).get("ANALYSIS_WORKERS")


def _instrument(extractor, index) -> PhaseTimer:
    """Time reindex's phases by wrapping what it calls (module globals and the cached instances)."""
    from visualsearch.services import embedding

    phases = PhaseTimer()
    if hasattr(embedding, "decode_batch"):  # pipelined: batches decode in a prefetch thread while the CNN runs
        embedding.decode_batch = phases.wrap(DECODE_PHASE, embedding.decode_batch)
    else:
        embedding.load_stored_image = phases.wrap(DECODE_PHASE, embedding.load_stored_image)
    embedding._store = phases.wrap("store vectors (DB)", embedding._store)
    extractor.embed = phases.wrap("embed (resize + CNN)", extractor.embed)
    index.rebuild = phases.wrap("index rebuild (read vectors + load)", index.rebuild)
    try:
        from visualsearch.services import recognition
    except ImportError:  # a revision without the recognition stage
        return phases
    # Called through the module by services.indexing: wrapping the module attributes times them. The two do not
    # overlap (training analyses its own sample of photos first, then every photo is analysed for storage).
    recognition.train_vocabulary = phases.wrap("vocabulary training (SIFT on a sample + k-means)",
                                               recognition.train_vocabulary)  # fmt: skip
    recognition.store_features = phases.wrap("local features (decode + SIFT + words + store)",
                                             recognition.store_features)  # fmt: skip
    return phases


@dataclass
class CallSamples:
    """Seconds of every call per step, recorded only while ``active`` (one call per photo and step)."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    active: bool = False

    def wrap(self, step: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            if not self.active:
                return function(*args, **kwargs)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.samples.setdefault(step, []).append(time.perf_counter() - started)

        return wrapper

    def scope(self, step: str, function: Callable) -> Callable:
        """Record ``function``'s total seconds per call and switch recording on inside it."""

        def wrapper(*args, **kwargs):
            self.active = True
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.active = False
                self.samples.setdefault(step, []).append(time.perf_counter() - started)

        return wrapper


def _instrument_local_features() -> CallSamples:
    """Per-call seconds of each local-feature step, only inside ``recognition.store_features`` (so training's own
    analysis of its sample is not counted). The wrappers sit where ``store_features`` looks the functions up:
    module attributes, and the Vocabulary class for its methods."""
    from visualsearch.recognition import features, packing, vocabulary
    from visualsearch.services import recognition

    calls = CallSamples()
    recognition.load_for_features = calls.wrap("decode", recognition.load_for_features)
    features.greyscale = calls.wrap("greyscale + resize", features.greyscale)
    features.extract = calls.wrap("SIFT (detect + describe + RootSIFT)", features.extract)
    vocabulary.Vocabulary.assign = calls.wrap("assign words", vocabulary.Vocabulary.assign)
    vocabulary.Vocabulary.signatures = calls.wrap("signatures", vocabulary.Vocabulary.signatures)
    packing.pack = calls.wrap("pack", packing.pack)
    recognition.store_features = calls.scope("store_features batch", recognition.store_features)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs")
    parser.add_argument("job", choices=["populate", "reindex", "train-vocabulary", "synthesize"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--per-product", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--per-photo", action="store_true", help="reindex: per-call local-feature timings")
    parser.add_argument("--words", default="catalog", help="train-vocabulary: 'catalog', 'sample' or a size")
    parser.add_argument("--catalog-size", type=int, default=0, help="train-vocabulary/synthesize: N photos")
    parser.add_argument("--noise-cos", default="auto", help="synthesize: cosine of a synthetic vector to its base")
    parser.add_argument("--groups", type=Path, help="synthesize: JSON list, a group key per real photo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not os.environ.get("DJANGO_VAR_DIR"):
        raise SystemExit("bench.jobs runs only in a benchmark site (DJANGO_VAR_DIR unset: it would use var/)")
    quiet_tensorflow()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    if args.job == "populate":
        result = populate(args.manifest, args.per_product)
    elif args.job == "reindex":
        result = reindex(args.batch_size, per_photo=args.per_photo)
    else:
        from . import recognition_jobs

        if args.job == "train-vocabulary":
            result = recognition_jobs.train_vocabulary(args.words, args.catalog_size)
        else:
            groups = json.loads(args.groups.read_text()) if args.groups else None
            result = recognition_jobs.synthesize(args.catalog_size, args.per_product, args.noise_cos, groups,
                                                 args.seed)  # fmt: skip
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
