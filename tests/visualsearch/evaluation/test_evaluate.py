"""`manage.py evaluate` end to end on tiny generated datasets, with the real default extractor."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog.models import Product, ProductImage
from tests.conftest import another_view, encode, scene, scene_jpeg
from tests.services import elasticsearch_url, uses_elasticsearch
from visualsearch.backends.embedded import EmbeddedIndex
from visualsearch.evaluation.dataset import load_dataset
from visualsearch.evaluation.runner import Options, run_evaluation
from visualsearch.models import ImageEmbedding, IndexGeneration
from visualsearch.registry import get_index
from visualsearch.services import search_by_image
from visualsearch.services.indexing import ensure_loaded

pytestmark = pytest.mark.django_db

KEYS = {
    "recall@1", "recall@5", "recall@10", "map", "ns_score", "ann_recall@10", "threshold", "empty_at_threshold",
    "recommended_threshold", "recommended_precision", "recommended_recall", "index_images_per_s", "latency_ms",
    "ns_score_global", "recognition", "recognition_note", "stage_recall_global", "stage_recall_words",
    "stage_recall_union", "stage_recall_verified", "exact_rate", "exact_precision", "vocabulary_words",
    "local_features_ms_per_photo", "local_features_bytes_per_photo", "distractors",
}  # fmt: skip
BASE_STAGES = {"total", "decode", "embed", "search", "assemble"}
RECOGNITION_STAGES = {"local_features", "candidates_global", "candidates_words", "verify"}


class ApproximateIndex(EmbeddedIndex):
    """Declares itself approximate (as Elasticsearch's HNSW is), so evaluate measures its ANN recall."""

    exact = False


def evaluate(*args, verbosity: int = 1) -> tuple[str, dict]:
    out = io.StringIO()
    call_command("evaluate", *map(str, args), stdout=out, stderr=io.StringIO(), verbosity=verbosity)
    text = out.getvalue()
    return text, json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def identical(make_dataset):
    """Three products; each query is a byte-identical copy of its product's catalog photo."""
    rows = [(f"g{n}.jpg", f"p{n}", "gallery", scene_jpeg(n)) for n in range(3)]
    rows += [(f"q{n}.jpg", f"p{n}", "query", scene_jpeg(n)) for n in range(3)]
    return make_dataset(rows)


@pytest.fixture
def two_views(make_dataset):
    """UKBench-like: three objects photographed twice, every photo both indexed and searched."""
    rows = []
    for n in range(3):
        rows += [(f"{n}a.jpg", f"o{n}", "both", scene(n)), (f"{n}b.jpg", f"o{n}", "both", another_view(scene(n)))]
    return make_dataset(rows)


def test_identical_photos_are_all_found_first(identical):
    text, summary = evaluate(identical)
    assert KEYS <= set(summary)
    assert summary["recall@1"] == summary["map"] == 1.0
    assert (summary["products"], summary["images_indexed"], summary["queries"]) == (3, 3, 3)
    assert summary["empty_at_threshold"] == 0.0  # identical photos score 1.0, above any sane threshold
    assert summary["recommended_recall"] == 1.0 and summary["recommended_precision"] == 1.0
    assert summary["recommended_threshold"] > 0.99
    assert summary["ns_score"] is None  # not all 'both'
    assert summary["ann_recall@10"] == (1.0 if uses_elasticsearch() else None)  # measured for approximate indexes
    # the shapes of these synthetic photos have enough corners for a (small) vocabulary: recognition runs
    assert summary["recognition"] and set(summary["latency_ms"]) == BASE_STAGES | RECOGNITION_STAGES
    assert summary["exact_precision"] == 1.0  # an identical photo is the exact product
    assert summary["latency_ms"]["total"]["p95"] >= summary["latency_ms"]["total"]["p50"] > 0
    assert "recall@1 1.0000" in text


def test_verbosity_zero_prints_only_the_json(identical):
    text, summary = evaluate(identical, "--limit", 2, verbosity=0)
    assert len(text.strip().splitlines()) == 1 and summary["queries"] == 2


def test_report_files(identical, tmp_path):
    _, summary = evaluate(identical, "--report", tmp_path / "report", "--k", 3)
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "recommended threshold" in page  # + "exact" calibration
    assert "Recall at each stage" in page
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["summary"]["recall@3"] == 1.0 and data["curves"]["recall_at_k"]["1"] == 1.0
    assert summary["report"] == [str(tmp_path / "report" / "report.json"), str(tmp_path / "report" / "report.html")]


def test_ns_score_ranks_photos_exactly(two_views):
    _, summary = evaluate(two_views)
    assert summary["ns_score"] == 2.0  # itself and its other view, of a group of two
    assert summary["ns_score_global"] == 2.0  # the same from the vectors alone


def test_both_rows_find_their_product_through_its_other_photos(two_views):
    _, summary = evaluate(two_views)
    assert summary["recall@1"] == 1.0


def test_approximate_indexes_are_checked_against_exact_search(identical):
    options = Options(index={"BACKEND": f"{__name__}.ApproximateIndex"}, k=2)
    result = run_evaluation(load_dataset(identical), options)
    assert result.backend == "ApproximateIndex" and result.ann_recall == 1.0


def test_the_shops_data_and_index_are_untouched(catalog, identical, media_root):
    before, ids, files = _shop_state(), _shop_index_ids(), sorted(media_root.rglob("*"))
    shop_results = [(m.product.pk, m.score) for m in search_by_image(image_bytes=scene_jpeg(3), threshold=-1).matches]

    evaluate(identical)

    assert _shop_state() == before
    assert _shop_index_ids() == ids
    assert sorted(media_root.rglob("*")) == files
    after = [(m.product.pk, m.score) for m in search_by_image(image_bytes=scene_jpeg(3), threshold=-1).matches]
    assert after == pytest.approx(shop_results)


def _shop_index_ids() -> set[int]:
    """What the shop's index holds, as the next search (or process) sees it."""
    index = ensure_loaded(get_index())
    index.refresh()
    return index.image_ids()


def _shop_state() -> tuple:
    return (
        list(Product.objects.values_list("pk", "relation_id", "category", "is_active", "updated_at")),
        list(ProductImage.objects.values_list("pk", "sha256", "index_status", "indexed_at")),
        ImageEmbedding.objects.count(),
        list(IndexGeneration.objects.values_list("extractor_id", "generation")),
    )


def test_unreadable_query_photos_are_counted_not_fatal(make_dataset):
    root = make_dataset([("g.jpg", "p", "gallery", scene_jpeg(1)), ("q.jpg", "p", "query", b"not an image"),
                         ("r.jpg", "p", "query", encode(scene(1), "PNG"))])  # fmt: skip
    _, summary = evaluate(root)
    assert summary["queries_failed"] == 1 and summary["queries"] == 1 and summary["recall@1"] == 1.0


def test_bad_dataset_is_a_command_error(make_dataset):
    root = make_dataset([("g.jpg", "p", "gallery", scene_jpeg(1)), ("q.jpg", "other", "query", scene_jpeg(2))])
    with pytest.raises(CommandError, match="no other gallery photo"):
        evaluate(root)


@pytest.mark.parametrize(
    "args",
    [("--k", "0"), ("--batch-size", "0"), ("--limit", "0"), ("--target-precision", "1.5"), ("--extractor", "nope")],
)
def test_bad_options(identical, args):
    with pytest.raises(CommandError):
        evaluate(identical, *args)


def test_elasticsearch_needs_a_url(identical, settings, monkeypatch):
    settings.ELASTICSEARCH_URL = ""
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    with pytest.raises(CommandError, match="needs ELASTICSEARCH_URL"):
        evaluate(identical, "--backend", "elasticsearch")


@pytest.mark.services
def test_elasticsearch_evaluation_measures_ann_recall_and_deletes_its_indexes(identical, settings, monkeypatch):
    settings.ELASTICSEARCH_URL = elasticsearch_url()
    monkeypatch.setattr("visualsearch.evaluation.runner.new_namespace", lambda: "eval-pytest-cleanup")
    _, summary = evaluate(identical, "--backend", "elasticsearch", "--k", 2)
    assert summary["backend"] == "ElasticsearchIndex" and summary["ann_recall@2"] == 1.0
    assert summary["recall@1"] == 1.0
    from elasticsearch import Elasticsearch

    with Elasticsearch([settings.ELASTICSEARCH_URL]) as client:
        assert list(client.indices.get(index="eval-pytest-cleanup*", expand_wildcards="all")) == []
