from __future__ import annotations

import numpy as np
import pytest

from visualsearch.evaluation import metrics


def test_recall_at_k_counts_queries_whose_product_is_in_the_first_k():
    ranks = [1, 2, 5, 0]  # 0: not returned at all
    assert metrics.recall_at_k(ranks, 1) == 0.25
    assert metrics.recall_at_k(ranks, 2) == 0.5
    assert metrics.recall_at_k(ranks, 5) == 0.75
    assert metrics.recall_at_k(ranks, 100) == 0.75
    assert metrics.recall_at_k([], 1) == 0.0


def test_first_relevant_rank():
    assert metrics.first_relevant_rank([False, False, True, True]) == 3
    assert metrics.first_relevant_rank([False]) == 0


def test_average_precision_with_one_relevant_item_is_one_over_its_rank():
    assert metrics.average_precision([True, False]) == 1.0
    assert metrics.average_precision([False, False, False, True]) == 0.25
    assert metrics.average_precision([False, False]) == 0.0
    assert metrics.mean_average_precision([[True], [False, True], [False, False]]) == pytest.approx(0.5)


def test_average_precision_with_several_relevant_items():
    # relevant at 1 and 3, of 2 relevant: (1/1 + 2/3) / 2; a third relevant item never returned counts as 0.
    assert metrics.average_precision([True, False, True], n_relevant=2) == pytest.approx(5 / 6)
    assert metrics.average_precision([True, False, True], n_relevant=3) == pytest.approx(5 / 9)


def test_ns_score_counts_group_members_in_the_top_four_with_the_query_first():
    # Two groups of four on two axes; photo 3 of group a sits closer to group b than to its own group.
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    near_b = np.array([0.3, 0.954])
    vectors = np.stack([a, a * 0.99 + b * 0.01, a, near_b / np.linalg.norm(near_b), b, b, b, b])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = ["a"] * 4 + ["b"] * 4
    # Query 0: itself, photos 1 and 2 (a), then the nearest of the rest is photo 3 (a, cos 0.3) → 4.
    assert metrics.ns_score(vectors, groups, [0]) == 4.0
    # Query 3: itself (a), then three b photos → 1.
    assert metrics.ns_score(vectors, groups, [3]) == 1.0
    assert metrics.ns_score(vectors, groups, [0, 3]) == 2.5


def test_ns_score_puts_the_query_first_even_against_an_identical_duplicate():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert metrics.ns_score(vectors, ["x", "y", "y"], [1], top=2) == 1.0  # itself, then x's copy
    assert metrics.ns_score(vectors, ["x", "y", "y"], [2], top=1) == 1.0


def test_ns_score_with_fused_scores_puts_them_in_place_of_the_cosine():
    # Query 0 (group a): by cosine, b photos 4 (0.95) and 3 (0.9) come before its group's photos 1 (0.6), 2 (0.5).
    vectors = np.array([[1.0, 0.0], [0.6, 0.8], [0.5, 0.866], [0.9, 0.436], [0.95, 0.312], [0.0, 1.0]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = ["a", "a", "a", "b", "b", "c"]
    assert metrics.ns_score(vectors, groups, [0], top=3) == 1.0  # itself, 4 (b), 3 (b)
    # Recognition verified photos 2 and 1: their fused scores lift them above the b photos.
    assert metrics.ns_score(vectors, groups, [0], top=3, fused=[{2: 1.1, 1: 0.97}]) == 3.0
    # Only 2 lifted: itself, 2, then 4 by cosine.
    assert metrics.ns_score(vectors, groups, [0], top=3, fused=[{2: 1.1}]) == 2.0
    # A candidate without inliers keeps its cosine: it does not jump ahead of better photos.
    assert metrics.ns_score(vectors, groups, [0], top=3, fused=[{5: 0.0}]) == 1.0
    # The query stays first even when it is named; an empty mapping is the cosine ranking.
    assert metrics.ns_score(vectors, groups, [0, 0], top=2, fused=[{0: 0.0, 1: 5.0}, {}]) == 1.5


def test_exact_curve_replays_the_exact_rule_over_minimum_inliers():
    # per query: top product's inliers, coverage, verified, right, runner-up's inliers
    facts = [
        (30, 0.3, True, True, 5),  # exact up to 30 inliers
        (60, 0.5, True, False, 10),  # a wrong product with many inliers: exact up to 60
        (25, 0.3, True, True, 20),  # no margin over the runner-up: never exact
        (40, 0.01, True, True, 0),  # too small an area: never exact
        (50, 0.4, False, True, 0),  # no homography: never exact
    ]
    inliers, coverage, verified, right, runner_up = map(list, zip(*facts, strict=True))
    curve = metrics.exact_curve(inliers, coverage, verified, right, runner_up, margin=2.0, min_coverage=0.02,
                                min_inliers=[10, 30, 31, 60, 61], n_queries=10)  # fmt: skip
    assert curve.min_inliers.tolist() == [10, 30, 31, 60, 61]
    assert curve.labelled.tolist() == [0.2, 0.2, 0.1, 0.1, 0.0]  # of 10 queries, 5 without a shortlist
    assert curve.precision[:4].tolist() == [0.5, 0.5, 0.0, 0.0] and np.isnan(curve.precision[4])


def test_percentile_interpolates_linearly_and_knows_empty():
    assert metrics.percentile([4, 1, 3, 2], 50) == 2.5
    assert metrics.percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert metrics.percentile([7.0], 95) == 7.0
    assert metrics.percentile([], 50) is None


def test_empty_share_counts_best_scores_below_the_threshold_and_no_results():
    assert metrics.empty_share([0.9, 0.4, 0.5, np.nan], 0.5) == 0.5


def test_precision_recall_curve_merges_ties_and_counts_unreturned_matches():
    curve = metrics.precision_recall_curve([0.5, 0.9, 0.7, 0.7], [False, True, True, False], n_relevant=3)
    assert curve.thresholds.tolist() == [0.9, 0.7, 0.5]
    assert curve.precision.tolist() == pytest.approx([1.0, 2 / 3, 0.5])
    assert curve.recall.tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3])


def test_calibration_takes_the_lowest_threshold_before_precision_first_drops_below_target():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    matches = [True, True, False, True, False]  # precision 1, 1, .67, .75, .6 going down
    curve = metrics.precision_recall_curve(scores, matches, n_relevant=3)
    found = metrics.calibrate_threshold(curve, target_precision=0.75)
    # 0.6 also reaches .75, but only after a dip: raising the setting from 0.6 to 0.7 would break the target.
    assert (found.threshold, found.precision, found.recall) == (0.8, 1.0, pytest.approx(2 / 3))
    everything = metrics.calibrate_threshold(curve, target_precision=0.5)
    assert (everything.threshold, everything.recall) == (0.5, 1.0)


def test_calibration_says_none_when_no_threshold_reaches_the_target():
    curve = metrics.precision_recall_curve([0.9, 0.8], [False, True], n_relevant=1)
    found = metrics.calibrate_threshold(curve, target_precision=0.95)
    assert found.threshold is None and found.precision is None and found.recall is None
    assert metrics.calibrate_threshold(metrics.precision_recall_curve([], [], 0), 0.9).threshold is None


def test_calibration_on_separable_synthetic_scores():
    rng = np.random.default_rng(0)
    matching, other = rng.uniform(0.7, 1.0, 100), rng.uniform(-0.2, 0.6, 900)
    scores = np.concatenate([matching, other])
    curve = metrics.precision_recall_curve(scores, np.arange(1000) < 100, n_relevant=100)
    found = metrics.calibrate_threshold(curve, target_precision=0.95)
    # The lowest threshold with only matches above is the lowest matching score; below it comes a non-match
    # at .6, with 100 / 101 = .99 still ≥ .95, and so on until 5 non-matches have crept in (100 / 105 = .952).
    assert found.threshold == pytest.approx(np.sort(other)[-5]) and found.recall == 1.0
    assert found.precision == pytest.approx(100 / 105)
