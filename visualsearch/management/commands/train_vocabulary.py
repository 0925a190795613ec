"""`manage.py train_vocabulary`: train a new visual vocabulary on the catalog's photos (it goes live with the next
`reindex`, which re-analyses every photo with it and swaps the index atomically)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from visualsearch.services import recognition


class Command(BaseCommand):
    help = "Train a visual vocabulary on the catalog's photos; the next `reindex` builds the index with it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--words", type=int, default=None,
                            help="Vocabulary size (default: ~16 training descriptors per word, at most "
                                 "VISUALSEARCH_VOCABULARY_WORDS).")
        parser.add_argument("--photos", type=int, default=None, help="Catalog photos to sample (default 4000).")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, words: int | None, photos: int | None, seed: int, verbosity: int, **options):
        if not recognition.enabled():
            raise CommandError("recognition is off (VISUALSEARCH_RECOGNITION=off): nothing would use a vocabulary")
        if words is not None and not 16 <= words <= 1 << 20:
            raise CommandError("--words must be between 16 and 1048576")
        if photos is not None and photos < 1:
            raise CommandError("--photos must be at least 1")
        with tqdm(desc="analysing", unit="img", disable=verbosity < 1, file=self.stderr) as bar:
            row = recognition.train_vocabulary(words=words, max_photos=photos, seed=seed, activate=False,
                                               progress=bar.update)
        if row is None:
            raise CommandError("the catalog's photos have too few local features to train a vocabulary")
        self.stdout.write(f"train_vocabulary: {row.vocabulary_id} ({row.words} words from {row.descriptors} "
                          f"descriptors of {row.photos} photos); run `manage.py reindex` to put it live")
