"""`manage.py reindex`: embed what lacks a vector and rebuild the index from the stored vectors."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.models import IndexStatus, ProductImage
from visualsearch import services
from visualsearch.backends.base import IndexUnavailable
from visualsearch.registry import get_extractor, get_index
from visualsearch.services.indexing import (
    add_missing_features, count_entries, images_without_vectors, resync_products,
)


class Command(BaseCommand):
    help = "Embed photos that lack a vector and rebuild the vector index (safe to run twice)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--missing", action="store_true", help="Only index photos that are pending or failed.")
        parser.add_argument("--batch-size", type=int, default=64, help="Photos per model batch (default 64).")
        parser.add_argument(
            "--extractor",
            default="default",
            help="Extractor alias from VISUALSEARCH_EXTRACTORS. Another than the index's only stores vectors, "
            "so a later switch of VISUALSEARCH_EXTRACTOR needs no model work.",
        )
        parser.add_argument("--rollback", action="store_true", help="Swap back to the index the last rebuild replaced.")
        parser.add_argument(
            "--products",
            action="store_true",
            help="Re-send every photo's product fields (category, active) from the stored vectors, without the model: "
            "after Product.objects.update() / bulk_update(), which send no signals.",
        )

    def handle(self, *args, missing: bool, batch_size: int, extractor: str, rollback: bool, products: bool,
               verbosity: int, **kw):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if products and (missing or rollback or extractor != "default"):
            raise CommandError("--products re-sends product fields only: use it without the other options")
        if products:
            self._resend_products(verbosity)
            return
        try:
            self._run(missing=missing, batch_size=batch_size, extractor=extractor, rollback=rollback,
                      verbosity=verbosity)
        except IndexUnavailable as exc:  # unreachable, or another rebuild holds the lock: say so, no traceback
            raise CommandError(str(exc)) from exc

    def _run(self, *, missing: bool, batch_size: int, extractor: str, rollback: bool, verbosity: int) -> None:
        if rollback:
            try:
                get_index().rollback()
            except NotImplementedError as exc:  # the embedded index is rebuilt from the database instead
                raise CommandError(f"{exc}; run `reindex` to rebuild it from the stored vectors") from exc
            self.stdout.write("reindex: rolled back to the previous index")
            return
        try:
            chosen = get_extractor(extractor)
        except Exception as exc:
            raise CommandError(f"cannot load extractor {extractor!r}: {exc}") from exc
        if chosen.id != get_extractor().id:
            self._embed_only(chosen, batch_size, verbosity)
        elif missing:
            self._catch_up(batch_size, verbosity)
        else:
            self._rebuild(batch_size, verbosity)

    def _bar(self, total: int, verbosity: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit="img", disable=verbosity < 1 or total == 0, file=self.stderr)

    def _rebuild(self, batch_size: int, verbosity: int) -> None:
        todo = images_without_vectors(get_extractor().id).count()
        with self._bar(todo, verbosity, "embedding") as bar:
            report = services.rebuild_index(batch_size=batch_size, progress=bar.update)
        self._summary(f"{report.indexed} photos indexed, {report.embedded} embedded, {report.failed} failed", report)

    def _catch_up(self, batch_size: int, verbosity: int) -> None:
        todo = ProductImage.objects.exclude(index_status=IndexStatus.INDEXED).count()
        with self._bar(todo, verbosity, "indexing") as bar:
            report = services.index_pending(batch_size=batch_size, progress=bar.update)
        with self._bar(0, verbosity, "local features") as bar:
            analysed = add_missing_features(progress=bar.update)
        self._summary(f"{report.indexed} pending photos indexed, {report.failed} still failed or pending, "
                      f"{analysed} photos given local features", report)

    def _resend_products(self, verbosity: int) -> None:
        started = time.monotonic()
        with self._bar(count_entries(get_extractor().id), verbosity, "re-sending") as bar:
            try:
                sent = resync_products(progress=bar.update)
            except IndexUnavailable as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(f"reindex: {sent} photos re-sent with their product's fields (no model work), "
                          f"{time.monotonic() - started:.1f} s")

    def _embed_only(self, extractor, batch_size: int, verbosity: int) -> None:
        started = time.monotonic()
        with self._bar(images_without_vectors(extractor.id).count(), verbosity, "embedding") as bar:
            embedded, failed = services.embed_missing(extractor=extractor, batch_size=batch_size, progress=bar.update)
        self.stdout.write(
            f"reindex: {embedded} embedded with {extractor.id}, {failed} failed, {time.monotonic() - started:.1f} s "
            "(vectors stored; the index still serves the default extractor)"
        )

    def _summary(self, counts: str, report) -> None:
        self.stdout.write(f"reindex: {counts}, {report.seconds:.1f} s (extractor {get_extractor().id}, "
                          f"index {type(get_index()).__name__})")
