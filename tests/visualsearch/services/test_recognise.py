"""The recognition stage end to end through the search service: real photos, a shopper's perspective shot in
clutter, the vocabulary trained on first `reindex`, exact vs similar, the box, recognition off."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image
from skimage import data as samples

from catalog.models import ProductImage
from tests.conftest import encode
from visualsearch.models import LocalFeatureSet, VisualVocabulary
from visualsearch.recognition.verification import Verification
from visualsearch.services.recognise import Candidate, _decide
from visualsearch.services.search import EXACT, SIMILAR, Box, search_by_image

PHOTOS = {"astronaut": samples.astronaut, "coffee": samples.coffee, "chelsea": samples.chelsea,
          "rocket": samples.rocket}


def photo(name: str) -> Image.Image:
    return Image.fromarray(PHOTOS[name]())


def shopper_shot(name: str, *, seed: int = 0) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The product photographed at an angle, smaller, inside a cluttered 900×700 scene; returns the scene and the
    product's bounding box as fractions."""
    product = np.asarray(photo(name))
    h, w = product.shape[:2]
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)
    scene = cv2.GaussianBlur(scene, (0, 0), 3)  # clutter with texture, not pure noise
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    target = np.float32([[180, 120], [620, 90], [650, 560], [150, 600]])
    warped = cv2.warpPerspective(product, cv2.getPerspectiveTransform(corners, target), (900, 700))
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), cv2.getPerspectiveTransform(corners, target), (900, 700))
    scene[mask > 0] = warped[mask > 0]
    return Image.fromarray(scene), (140 / 900, 80 / 700, 660 / 900, 610 / 700)


@pytest.fixture
def shop(make_product, make_image, django_capture_on_commit_callbacks):
    products = {}
    with django_capture_on_commit_callbacks(execute=True):
        for name in PHOTOS:
            products[name] = make_product(relation_id=name, title=name)
            make_image(products[name], data=encode(photo(name)), name=f"{name}.jpg")
    call_command("reindex", verbosity=0)  # no vocabulary yet: trained on these photos, then features stored
    return products


@pytest.mark.django_db(transaction=False)
def test_the_first_reindex_trains_a_vocabulary_and_stores_compact_features(shop):
    vocabulary = VisualVocabulary.objects.get(is_active=True)
    assert vocabulary.photos == len(PHOTOS)
    stored = list(LocalFeatureSet.objects.all())
    assert len(stored) == len(PHOTOS)
    assert all(vocabulary.vocabulary_id in row.feature_id for row in stored)
    assert all(len(row.data) <= 32 * 1024 and row.keypoints > 100 for row in stored)


def test_reindex_analyses_photos_in_parallel_with_the_same_result_as_one_by_one(shop):
    from visualsearch.services.recognition import active_recognizer, store_features

    recognizer, photos = active_recognizer(), list(ProductImage.objects.order_by("pk"))
    threads = cv2.getNumThreads()
    stored = {}
    for workers in (1, 2):
        LocalFeatureSet.objects.all().delete()
        assert store_features(photos, recognizer, workers=workers) == {}
        stored[workers] = dict(LocalFeatureSet.objects.values_list("sha256", "data"))
    assert len(stored[2]) == len(PHOTOS) and stored[2] == stored[1]
    assert cv2.getNumThreads() == threads  # OpenCV runs single-threaded only during the bulk analysis


def test_an_unreadable_photo_fails_alone_and_a_readable_copy_of_it_still_counts(shop, make_image):
    from visualsearch.services.recognition import active_recognizer, store_features

    coffee = ProductImage.objects.get(product=shop["coffee"])
    damaged = make_image(shop["coffee"], data=encode(photo("coffee")), name="copy.jpg")  # same content as coffee
    broken = make_image(shop["rocket"], data=b"not an image at all", name="broken.jpg")
    with damaged.image.open("wb") as file:  # the copy's file is damaged after upload; its hash still says coffee
        file.write(b"\xff\xd8 truncated")
    LocalFeatureSet.objects.all().delete()
    errors = store_features([damaged, coffee, broken], active_recognizer(), workers=2)
    assert set(errors) == {broken.pk} and "local features failed" in errors[broken.pk]
    assert set(LocalFeatureSet.objects.values_list("sha256", flat=True)) == {coffee.sha256}


def test_a_shopper_photo_in_clutter_is_recognised_as_the_exact_product(shop):
    scene, _ = shopper_shot("astronaut")
    result = search_by_image(image_bytes=encode(scene), threshold=0.99)  # a high threshold: exact is always shown
    assert result.matches, "the exact product must be shown whatever the threshold"
    first = result.matches[0]
    assert first.product == shop["astronaut"]
    assert first.match == EXACT and first.inliers >= 20
    assert all(m.match == SIMILAR for m in result.matches[1:])


def test_the_box_limits_the_query_to_the_product(shop):
    scene, box = shopper_shot("chelsea", seed=1)
    result = search_by_image(image_bytes=encode(scene), box=Box(*box), threshold=-1.0)
    assert result.matches[0].product == shop["chelsea"]
    assert result.matches[0].match == EXACT


def test_an_unrelated_photo_is_never_labelled_exact(shop):
    unrelated = Image.fromarray(samples.immunohistochemistry())
    result = search_by_image(image_bytes=encode(unrelated), threshold=-1.0)
    assert len(result.matches) == len(PHOTOS)
    assert all(m.match == SIMILAR for m in result.matches)


def test_recognition_off_gives_the_global_ranking(shop, settings):
    scene, _ = shopper_shot("astronaut")
    settings.VISUALSEARCH = {**settings.VISUALSEARCH,
                             "RECOGNITION": {**settings.VISUALSEARCH["RECOGNITION"], "ENABLED": False}}
    result = search_by_image(image_bytes=encode(scene), threshold=-1.0)
    assert all(m.match == SIMILAR and m.inliers == 0 for m in result.matches)
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True)


def test_more_like_this_reuses_stored_features(shop, make_image):
    twin = make_image(shop["astronaut"], data=encode(photo("astronaut").rotate(3).crop((20, 20, 500, 500))))
    call_command("reindex", verbosity=0)
    result = search_by_image(image_id=twin.pk, threshold=-1.0)
    assert result.matches[0].product == shop["astronaut"] and result.matches[0].match == EXACT


def test_recognition_costs_a_constant_number_of_queries(shop, django_assert_max_num_queries):
    scene, _ = shopper_shot("rocket", seed=2)
    search_by_image(image_bytes=encode(scene), threshold=-1.0)  # warm: index loaded, features cached
    # vocabulary, generation, candidate photos, features (cache misses only), vectors, images, products
    with django_assert_max_num_queries(7):
        result = search_by_image(image_bytes=encode(scene), threshold=-1.0)
    assert result.matches[0].product == shop["rocket"] and result.matches[0].match == EXACT


def test_a_mirrored_photo_is_recognised_by_the_retry(shop):
    scene, _ = shopper_shot("coffee", seed=3)
    result = search_by_image(image_bytes=encode(scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT)), threshold=-1.0)
    assert result.matches[0].product == shop["coffee"] and result.matches[0].match == EXACT


def test_the_shopper_page_labels_the_recognised_product(shop, client):
    scene, _ = shopper_shot("rocket", seed=4)
    upload = SimpleUploadedFile("shot.jpg", encode(scene), content_type="image/jpeg")
    response = client.post("/search/", {"image": upload}, follow=True)
    assert response.status_code == 200
    assert response.content.decode().count("Same product") == 1


def test_multiple_assignment_keeps_the_exact_match(shop, settings):
    recognition_settings = {**settings.VISUALSEARCH["RECOGNITION"], "MULTIPLE_ASSIGNMENT_WORDS": 1}
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "RECOGNITION": recognition_settings}  # 3 words per feature
    scene, _ = shopper_shot("chelsea", seed=5)
    result = search_by_image(image_bytes=encode(scene), threshold=-1.0)
    assert result.matches[0].product == shop["chelsea"] and result.matches[0].match == EXACT
    assert all(m.match == SIMILAR for m in result.matches[1:])


def test_query_features_repeat_each_feature_once_per_word(shop):
    from visualsearch.services.recognition import active_recognizer

    recognizer = active_recognizer()
    scene, _ = shopper_shot("rocket", seed=6)
    single = recognizer.photo_features(scene, recognizer.query_side)
    multiple = recognizer.query_features(scene, 3)
    n = len(single)
    assert n < len(multiple) <= 3 * n
    np.testing.assert_array_equal(multiple.search_words, single.words)  # candidates: the nearest word only
    np.testing.assert_array_equal(multiple.words[:n], single.words)  # nearest words first, then the others


def test_a_photo_recognised_in_the_fast_pass_is_not_analysed_again(shop):
    scene, _ = shopper_shot("astronaut", seed=7)  # 900 px wide: above the fast first-pass size
    result = search_by_image(image_bytes=encode(scene), threshold=-1.0)
    assert result.matches[0].product == shop["astronaut"] and result.matches[0].match == EXACT
    assert "local_features_full" not in result.timings_ms


def test_without_an_exact_match_in_the_fast_pass_the_full_size_decides(shop, settings):
    recognition_settings = {**settings.VISUALSEARCH["RECOGNITION"], "FAST_QUERY_LONG_SIDE": 48}  # too small to tell
    settings.VISUALSEARCH = {**settings.VISUALSEARCH, "RECOGNITION": recognition_settings}
    scene, _ = shopper_shot("astronaut", seed=7)
    result = search_by_image(image_bytes=encode(scene), threshold=-1.0)
    assert "local_features_full" in result.timings_ms
    assert result.matches[0].product == shop["astronaut"] and result.matches[0].match == EXACT


def test_an_unrelated_photo_larger_than_the_fast_size_is_never_labelled_exact(shop):
    unrelated = Image.fromarray(samples.immunohistochemistry()).resize((900, 900))
    result = search_by_image(image_bytes=encode(unrelated), threshold=-1.0)
    assert "local_features_full" in result.timings_ms  # nothing sure in the fast pass: the full size was asked
    assert all(m.match == SIMILAR for m in result.matches)


def test_convincingly_verified_products_rank_above_merely_similar_looking_ones():
    """Two products verify with many inliers but too close to each other for "exact"; a third only looks alike
    (a high cosine, nothing verified) and a fourth verifies weakly: the verified pair still comes first."""
    def verified(inliers: int) -> Verification:
        return Verification(inliers, 0.2, np.eye(3))

    ranked = _decide([Candidate(3, 30, 0.95), Candidate(4, 40, 0.5, verified(10)),
                      Candidate(2, 20, 0.35, verified(20)), Candidate(1, 10, 0.35, verified(30))])
    assert [c.product_id for c in ranked] == [1, 2, 3, 4]
    assert not any(c.exact for c in ranked)
