"""`manage.py reindex`: embed what lacks a vector and rebuild the index from the stored vectors."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.models import IndexStatus, ProductImage
from visualsearch import services
from visualsearch.registry import get_extractor, get_index
from visualsearch.services.indexing import images_without_vectors


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

    def handle(self, *args, missing: bool, batch_size: int, extractor: str, rollback: bool, verbosity: int, **kw):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
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
        self._summary(f"{report.indexed} pending photos indexed, {report.failed} still failed or pending", report)

    def _embed_only(self, extractor, batch_size: int, verbosity: int) -> None:
        import time

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
