"""`evaluate` with the recognition stage: stage recalls, "exact" precision and calibration, local-feature cost,
N-S from recognition's photo ranking, and recognition off (by setting, or for lack of features)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image
from skimage import data as samples

from tests.conftest import encode
from visualsearch.models import LocalFeatureSet, VisualVocabulary
from visualsearch.services.recognise import EXACT_MIN_INLIERS
from visualsearch.services.search import EXACT, search_by_image

from .test_evaluate import BASE_STAGES, RECOGNITION_STAGES, evaluate

pytestmark = pytest.mark.django_db

PHOTOS = {"astronaut": samples.astronaut, "coffee": samples.coffee, "chelsea": samples.chelsea,
          "rocket": samples.rocket}  # fmt: skip
STAGE_KEYS = ("stage_recall_global", "stage_recall_words", "stage_recall_union", "stage_recall_verified")


def photo(name: str) -> Image.Image:
    return Image.fromarray(PHOTOS[name]())


def shopper_shot(name: str, seed: int) -> Image.Image:
    """The product photographed at an angle, smaller, in a cluttered scene (textured noise)."""
    product = np.asarray(photo(name))
    h, w = product.shape[:2]
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8), (0, 0), 3)
    jitter = rng.uniform(-30, 30, (4, 2))
    target = np.float32([[150, 100], [600, 80], [630, 520], [130, 540]] + jitter)
    transform = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), target)
    warped = cv2.warpPerspective(product, transform, (800, 600))
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), transform, (800, 600))
    scene[mask > 0] = warped[mask > 0]
    return Image.fromarray(scene)


def recognition_off(settings) -> None:
    settings.VISUALSEARCH = {**settings.VISUALSEARCH,
                             "RECOGNITION": {**settings.VISUALSEARCH["RECOGNITION"], "ENABLED": False}}


@pytest.fixture
def shoppers(make_dataset):
    """Four catalog photos; each searched with two shopper shots of it."""
    rows = [(f"{name}.jpg", name, "gallery", photo(name)) for name in PHOTOS]
    rows += [(f"{name}-{n}.jpg", name, "query", shopper_shot(name, seed=n)) for name in PHOTOS for n in range(2)]
    return make_dataset(rows)


def test_stages_and_exact_labels_are_measured(shoppers, tmp_path):
    text, summary = evaluate(shoppers, "--report", tmp_path / "report")

    assert summary["recognition"] is True and summary["recognition_note"] is None
    assert summary["queries"] == 8 and summary["recall@1"] == 1.0
    recalls = [summary[key] for key in STAGE_KEYS]
    assert all(0.0 <= r <= 1.0 for r in recalls)
    assert summary["stage_recall_union"] >= max(summary["stage_recall_global"], summary["stage_recall_words"])
    assert summary["stage_recall_global"] == 1.0  # 4 products, 30 global candidates: every product is a candidate
    assert summary["stage_recall_verified"] == 1.0  # every shot verifies against its catalog photo
    assert summary["exact_rate"] > 0.5 and summary["exact_precision"] == 1.0
    assert summary["exact_min_inliers"] == EXACT_MIN_INLIERS
    # the cost of local features, trained on the 4 gallery photos only (never on the 8 queries)
    assert summary["vocabulary_photos"] == 4 and summary["vocabulary_words"] >= 64
    assert summary["local_features_photos"] == 4 and summary["local_features_failed"] == 0
    assert summary["local_features_ms_per_photo"] > 0
    assert 0 < summary["local_features_bytes_per_photo"] <= 32 * 1024
    assert summary["local_features_keypoints_per_photo"] > 100
    # 4 photos: recognition verifies every photo sharing a word with the query, not a shortlist
    assert summary["candidates_global"] == summary["candidates_words"] == 4 and summary["candidates_exhaustive"]
    assert set(summary["latency_ms"]) == BASE_STAGES | RECOGNITION_STAGES
    assert all(summary["latency_ms"][stage]["p50"] > 0 for stage in RECOGNITION_STAGES)
    assert "stage recall: global top-4 1.0000" in text and "every photo is a candidate" in text
    assert "exact: " in text and "bytes and" in text

    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "Calibration of &quot;exact&quot;" in page
    assert "Recall at each stage" in page and "visual words top-4 photos" in page
    calibration = json.loads((tmp_path / "report" / "report.json").read_text())["curves"]["exact_calibration"]
    assert [point["min_inliers"] for point in calibration] == list(range(5, 101))
    at_configured = next(p for p in calibration if p["min_inliers"] == EXACT_MIN_INLIERS)
    # the replayed rule at the configured minimum is the service's own decision
    assert at_configured["labelled"] == pytest.approx(summary["exact_rate"])
    assert at_configured["precision"] == summary["exact_precision"]
    shares = [point["labelled"] for point in calibration]
    assert shares == sorted(shares, reverse=True)  # a higher minimum never labels more


def test_ns_score_with_recognition_ranks_photos_by_the_fused_score(make_dataset, settings):
    settings.VISUALSEARCH = {**settings.VISUALSEARCH,  # a shortlist, as in a large catalog
                             "RECOGNITION": {**settings.VISUALSEARCH["RECOGNITION"], "EXHAUSTIVE_BELOW": 0,
                                             "GLOBAL_CANDIDATES": 2, "WORD_CANDIDATES": 3}}
    rows = []
    for name in PHOTOS:
        rows += [(f"{name}-a.jpg", name, "both", photo(name)), (f"{name}-b.jpg", name, "both", shopper_shot(name, 1))]
    _, summary = evaluate(make_dataset(rows))
    assert summary["recognition"] is True
    assert summary["ns_score"] == 2.0  # itself and its other view (groups of two)
    assert summary["ns_score_global"] is not None and summary["ns_score_global"] <= summary["ns_score"]
    assert (summary["candidates_global"], summary["candidates_words"]) == (2, 3)
    assert not summary["candidates_exhaustive"]


def test_recognition_off_by_setting_keeps_the_global_output(shoppers, settings, tmp_path):
    recognition_off(settings)
    text, summary = evaluate(shoppers, "--report", tmp_path / "report")
    assert summary["recognition"] is False and "disabled" in summary["recognition_note"]
    assert all(summary[key] is None for key in (*STAGE_KEYS, "exact_rate", "exact_precision", "vocabulary_words",
                                                "local_features_ms_per_photo", "local_features_bytes_per_photo"))
    assert set(summary["latency_ms"]) == BASE_STAGES
    assert "stage recall" not in text and "exact:" not in text
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "Recall at each stage" not in page
    assert json.loads((tmp_path / "report" / "report.json").read_text())["curves"]["exact_calibration"] is None


@pytest.fixture
def shop(make_product, make_image, django_capture_on_commit_callbacks):
    """The shop has recognition running: a vocabulary trained on its photos, and their features."""
    with django_capture_on_commit_callbacks(execute=True):
        for name in PHOTOS:
            make_image(make_product(relation_id=name, title=name), data=encode(photo(name)), name=f"{name}.jpg")
    call_command("reindex", verbosity=0)
    return VisualVocabulary.objects.get(is_active=True), LocalFeatureSet.objects.count()


def _shop_unchanged(shop) -> None:
    vocabulary, features = shop
    assert VisualVocabulary.objects.get(is_active=True) == vocabulary
    assert LocalFeatureSet.objects.count() == features
    result = search_by_image(image_bytes=encode(shopper_shot("coffee", 3)), threshold=-1.0)
    assert result.matches[0].product.relation_id == "coffee" and result.matches[0].match == EXACT


def test_a_dataset_of_the_shops_own_photos_gets_a_vocabulary_of_its_own(shop, shoppers):
    # The same gallery photos would train the shop's very vocabulary, whose file the sandbox does not have.
    _, summary = evaluate(shoppers)
    assert summary["recognition"] is True and summary["exact_precision"] == 1.0
    _shop_unchanged(shop)


def test_without_enough_features_recognition_does_not_run_not_even_with_the_shops_vocabulary(shop, make_dataset):

    # Flat colours have no local features: no vocabulary of the dataset can be trained.
    flat = [Image.new("RGB", (256, 256), colour) for colour in ("red", "green", "blue")]
    rows = [(f"g{n}.jpg", f"p{n}", "gallery", image) for n, image in enumerate(flat)]
    rows += [(f"q{n}.jpg", f"p{n}", "query", image) for n, image in enumerate(flat)]
    text, summary = evaluate(make_dataset(rows))

    assert summary["recognition"] is False and "too few local features" in summary["recognition_note"]
    assert set(summary["latency_ms"]) == BASE_STAGES  # the shop's vocabulary was not used either
    assert "recognition off: the gallery photos have too few local features" in text
    _shop_unchanged(shop)
