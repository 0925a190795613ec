"""Work that runs inside a benchmark site's Django process: ``python -m bench.jobs <job> --out result.json ...``.

Started by :meth:`bench.site.Site.job` with the site's environment (temp var dir, chosen extractor and backend).

- ``populate``: products and photos in bulk with the ORM. ``bulk_create`` skips ``save()`` and signals, so the
  content hash and size come from the photo manifest and the files are hard-linked into MEDIA_ROOT here.
- ``reindex``: build the model first (not timed: a server or worker has it loaded already), then time
  ``manage.py reindex`` run through ``call_command``, with each phase timed by wrapping the functions it calls.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import time
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


def reindex(batch_size: int) -> dict[str, Any]:
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
    }


def _instrument(extractor, index) -> PhaseTimer:
    """Time reindex's phases by wrapping what it calls (module globals and the cached instances)."""
    from visualsearch.services import embedding

    phases = PhaseTimer()
    embedding.load_stored_image = phases.wrap("decode (read + decode file)", embedding.load_stored_image)
    embedding._store = phases.wrap("store vectors (DB)", embedding._store)
    extractor.embed = phases.wrap("embed (resize + CNN)", extractor.embed)
    index.rebuild = phases.wrap("index rebuild (read vectors + load)", index.rebuild)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs")
    parser.add_argument("job", choices=["populate", "reindex"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--per-product", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    if not os.environ.get("DJANGO_VAR_DIR"):
        raise SystemExit("bench.jobs runs only in a benchmark site (DJANGO_VAR_DIR unset: it would use var/)")
    quiet_tensorflow()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    if args.job == "populate":
        result = populate(args.manifest, args.per_product)
    else:
        result = reindex(args.batch_size)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
