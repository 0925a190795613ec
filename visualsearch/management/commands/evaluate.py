"""`manage.py evaluate DATASET_DIR`: accuracy and speed of visual search on a shop's own labelled photos."""
from __future__ import annotations

import json

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from visualsearch.backends.base import IndexUnavailable
from visualsearch.evaluation.dataset import DatasetError, load_dataset
from visualsearch.evaluation.distractors import find_distractors
from visualsearch.evaluation.report import console_lines, write_report
from visualsearch.evaluation.runner import Options, run_evaluation
from visualsearch.evaluation.sandbox import BACKENDS, SandboxError, configured_backend, index_config
from visualsearch.evaluation.summary import curves, summarise


class Command(BaseCommand):
    help = (
        "Import a labelled dataset (a folder with groups.csv: path,group,role) into a throw-away catalog and index, "
        "search with its query photos through the same service as the API, and print recall@1/5/10, mAP, the "
        "UKBench N-S score (all rows 'both'; computed from an exact image-level ranking over the stored vectors, "
        "because searches return one hit per product), the share of empty results at the configured threshold, "
        "ANN recall (approximate indexes), indexing throughput and search latency. With recognition on, also the "
        "recall of each candidate stage, the precision and rate of \"exact\" labels (calibrated in the report), "
        "per-stage latency and the cost of local features; --distractors adds extra gallery photos that match no "
        "query, to test a small set inside a large catalog. The last line is JSON. "
        "Nothing is kept: the database work is rolled back, files go to a temporary MEDIA_ROOT and the index is "
        "separate. On SQLite the rollback transaction holds the write lock for the whole run, so run it against a "
        "copy of the database, not next to a live site."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("dataset", metavar="DATASET_DIR", help="Folder with groups.csv and the photos.")
        parser.add_argument("--extractor", default="default",
                            help="Alias in VISUALSEARCH_EXTRACTORS (default: default).")
        parser.add_argument("--backend", choices=sorted(BACKENDS), help="Index backend (default: the configured one).")
        parser.add_argument("--k", type=int, default=10, help="Cut-off for recall@k and ANN recall (default 10).")
        parser.add_argument("--report", metavar="DIR", help="Write report.json and report.html (with plots) here.")
        parser.add_argument("--limit", type=int, help="Only the first N queries.")
        parser.add_argument("--target-precision", type=float, default=0.95,
                            help="Precision the recommended threshold must keep (default 0.95).")  # fmt: skip
        parser.add_argument("--batch-size", type=int, default=64, help="Photos per model batch (default 64).")
        parser.add_argument("--distractors", metavar="DIR",
                            help="Every jpg/jpeg/png/webp under DIR (recursively) is added to the gallery as a "
                                 "product of its own that no query is looking for.")
        parser.add_argument("--distractor-copies", type=int, default=0, metavar="N",
                            help="Also N augmented copies of each distractor (crop, rotation, colour shift, JPEG; "
                                 "deterministic), made in memory (default 0).")
        parser.add_argument("--max-distractors", type=int, metavar="N",
                            help="At most N distractors in all: every file first, then copies round by round.")

    def handle(self, *args, dataset: str, report: str | None, verbosity: int, **options) -> None:
        _check(options)
        try:
            loaded = load_dataset(dataset)
            distractors = _distractors(options)
            config = index_config(options["backend"] or configured_backend())
            result = run_evaluation(loaded, self._options(config, options, verbosity, distractors))
        except (DatasetError, SandboxError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        except IndexUnavailable as exc:
            raise CommandError(f"the evaluation index is unavailable: {exc}") from exc
        found = curves(result, options["target_precision"])
        summary = summarise(result, found)
        if report:
            summary["report"] = [str(path) for path in write_report(report, summary, found)]
        if verbosity > 0:
            self.stdout.write("\n".join(console_lines(summary)))
        self.stdout.write(json.dumps(summary))

    def _options(self, config: dict, options: dict, verbosity: int, distractors: list) -> Options:
        def progress(description: str, total: int) -> tqdm:
            return tqdm(total=total, desc=description, unit="img", disable=verbosity < 1, file=self.stderr)

        return Options(
            index=config, extractor_alias=options["extractor"], k=options["k"], limit=options["limit"],
            batch_size=options["batch_size"], progress=progress, distractors=distractors,
        )  # fmt: skip


def _check(options: dict) -> None:
    if options["k"] < 1 or options["batch_size"] < 1 or (options["limit"] is not None and options["limit"] < 1):
        raise CommandError("--k, --batch-size and --limit must be at least 1")
    if not 0.0 < options["target_precision"] <= 1.0:
        raise CommandError("--target-precision must be in (0, 1]")
    if options["distractor_copies"] < 0 or (options["max_distractors"] is not None and options["max_distractors"] < 1):
        raise CommandError("--distractor-copies must be at least 0 and --max-distractors at least 1")
    if options["distractors"] is None and (options["distractor_copies"] or options["max_distractors"] is not None):
        raise CommandError("--distractor-copies and --max-distractors need --distractors DIR")


def _distractors(options: dict) -> list:
    if options["distractors"] is None:
        return []
    return find_distractors(options["distractors"], copies=options["distractor_copies"],
                            limit=options["max_distractors"])  # fmt: skip
