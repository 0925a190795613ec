"""`manage.py media_orphans [--delete]`: photo files in storage that no photo row names."""
from __future__ import annotations

from datetime import timedelta

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand
from django.utils import timezone

from catalog.models import ProductImage

ROOT = "products"


class Command(BaseCommand):
    help = "List (or --delete) files under media/products/ that no ProductImage refers to."

    def add_arguments(self, parser):
        parser.add_argument("--delete", action="store_true", help="delete them")
        parser.add_argument("--min-age", type=int, default=60, metavar="MINUTES",
                            help="skip files younger than this: an upload may be between its file and its row")

    def handle(self, *args, **options):
        referenced = set(ProductImage.objects.values_list("image", flat=True))
        cutoff = timezone.now() - timedelta(minutes=options["min_age"])
        orphans = [name for name in _files(ROOT) if name not in referenced
                   and default_storage.get_modified_time(name) < cutoff]
        for name in orphans:
            self.stdout.write(name)
            if options["delete"]:
                default_storage.delete(name)
        verb = "deleted" if options["delete"] else "found"
        self.stderr.write(f"media_orphans: {len(orphans)} orphaned file(s) {verb}")


def _files(directory: str):
    if not default_storage.exists(directory):
        return
    folders, files = default_storage.listdir(directory)
    for name in files:
        yield f"{directory}/{name}"
    for folder in folders:
        yield from _files(f"{directory}/{folder}")
