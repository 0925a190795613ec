"""`evaluate --distractors DIR`: extra gallery photos that match no query, their augmented copies, and confinement
to DIR."""
from __future__ import annotations

import io

import pytest
from django.core.management.base import CommandError
from PIL import Image

from tests.conftest import another_view, encode, scene
from visualsearch.evaluation.dataset import DatasetError, load_dataset
from visualsearch.evaluation.distractors import Distractor, augment, content, find_distractors
from visualsearch.evaluation.runner import Options, run_evaluation
from visualsearch.evaluation.sandbox import index_config

from .test_evaluate import evaluate

MAX_PIXELS = 16_000_000


def write(path, image: Image.Image, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(image, fmt))


@pytest.fixture
def folder(tmp_path):
    """Image files in nested folders, with names and formats a shop's export might have, and a stray text file."""
    root = tmp_path / "distractors"
    write(root / "b.jpg", scene(20))
    write(root / "a" / "c.JPEG", scene(21))
    write(root / "a" / "d.png", scene(22), "PNG")
    write(root / "z" / "e.webp", scene(23), "WEBP")
    (root / "notes.txt").write_text("not a photo")
    return root


def test_every_image_file_is_found_in_a_stable_order_and_copies_come_round_by_round(folder):
    found = find_distractors(folder, copies=2)
    assert [(d.relpath, d.copy) for d in found[:5]] == [
        ("b.jpg", 0), ("a/c.JPEG", 0), ("a/d.png", 0), ("z/e.webp", 0), ("b.jpg", 1)
    ]  # fmt: skip
    assert len(found) == 12 and [d.copy for d in found[4:8]] == [1] * 4 and [d.copy for d in found[8:]] == [2] * 4
    # a cap keeps every file before any copy
    assert [(d.relpath, d.copy) for d in find_distractors(folder, copies=2, limit=5)][-1] == ("b.jpg", 1)
    assert len(find_distractors(folder, limit=2)) == 2


def test_copies_are_deterministic_augmented_jpegs(folder):
    original, first, second = Distractor(folder / "b.jpg", "b.jpg"), *(
        Distractor(folder / "b.jpg", "b.jpg", n) for n in (1, 2))
    assert content(original, max_pixels=MAX_PIXELS) == (folder / "b.jpg").read_bytes()
    copy = content(first, max_pixels=MAX_PIXELS)
    assert copy == content(first, max_pixels=MAX_PIXELS)  # the same bytes on every run
    assert copy != content(second, max_pixels=MAX_PIXELS)
    decoded = Image.open(io.BytesIO(copy))
    assert decoded.format == "JPEG" and first.name == "b.jpg"
    assert max(decoded.size) <= 256 * 1.3  # a crop, turned (which widens it a little), never enlarged
    assert augment(scene(1), seed="x") == augment(scene(1), seed="x") != augment(scene(1), seed="y")


def test_symlinks_out_of_the_folder_are_refused(folder, tmp_path):
    outside = tmp_path / "private"
    write(outside / "secret.jpg", scene(30))
    (folder / "inside-link.jpg").symlink_to(folder / "b.jpg")  # inside: allowed, counted once
    (folder / "a" / "again").symlink_to(folder / "z")  # a folder inside: not walked twice
    assert len(find_distractors(folder)) == 4

    (folder / "leak.jpg").symlink_to(outside / "secret.jpg")
    with pytest.raises(DatasetError, match=r"1 path\(s\) lead outside .* symlinks: leak.jpg"):
        find_distractors(folder)
    (folder / "leak.jpg").unlink()
    (folder / "a" / "private").symlink_to(outside)
    with pytest.raises(DatasetError, match="a/private"):
        find_distractors(folder)


def test_an_empty_or_missing_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no jpeg/jpg/png/webp files"):
        find_distractors(tmp_path / "empty")
    with pytest.raises(DatasetError, match="is not a directory"):
        find_distractors(tmp_path / "missing")


@pytest.fixture
def other_views(make_dataset):
    """Three products whose catalog photo is another view of what the shopper photographs."""
    rows = [(f"g{n}.jpg", f"p{n}", "gallery", another_view(scene(n))) for n in range(3)]
    rows += [(f"q{n}.jpg", f"p{n}", "query", scene(n)) for n in range(3)]
    return make_dataset(rows)


@pytest.mark.django_db
def test_distractors_are_indexed_but_never_relevant(other_views, folder):
    (folder / "q0-lookalike.jpg").write_bytes(encode(scene(0)))  # the very photo of query 0, as another product
    (folder / "g1-copy.jpg").write_bytes((other_views / "images" / "g1.jpg").read_bytes())  # a dataset photo
    distractors = find_distractors(folder, copies=1)
    assert len(distractors) == 12
    result = run_evaluation(load_dataset(other_views),
                            Options(index=index_config("embedded"), distractors=distractors))  # fmt: skip

    # the copy of a dataset photo (and its augmented copy) is left out: it would be the product under another name
    assert (result.distractors, result.distractors_skipped) == (10, 2)
    assert result.indexed == 3 + 10 and result.products == 3
    assert result.search_limit == 10  # max(k, the dataset's products): distractors do not make searches longer
    # they stand for the rest of a catalog: its vocabulary is trained on them too (never on the queries)
    assert result.recognition.ran and result.recognition.vocabulary_photos == 3 + 10
    first = {q.relpath: q for q in result.queries}["images/q0.jpg"]
    assert not first.matches[0] and first.rank > 1  # a distractor took the first place: it never counts
    assert all(q.matches.sum() == 1 for q in result.queries)  # only the query's own product is relevant


@pytest.mark.django_db
def test_the_command_counts_distractors_and_they_take_part_in_the_ns_score(make_dataset, folder):
    rows = []
    for n in range(3):
        rows += [(f"{n}a.jpg", f"o{n}", "both", scene(n)), (f"{n}b.jpg", f"o{n}", "both", another_view(scene(n)))]
    root = make_dataset(rows)
    # Three near-identical photos of object 0 as other products (not the same bytes as 0a.jpg): for query 0a they
    # rank before its other view, which drops out of the top 4.
    for quality in (70, 80, 90):
        (folder / f"lookalike-{quality}.jpg").write_bytes(encode(scene(0), quality=quality))
    text, summary = evaluate(root, "--distractors", folder, "--distractor-copies", 2, "--max-distractors", 9)
    assert summary["distractors"] == 9 and summary["images_indexed"] == 6 + 9
    assert "distractors: 9 extra gallery photos" in text
    assert summary["ns_score_global"] < 2.0 and summary["ns_score"] < 2.0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--distractor-copies", "2"), "need --distractors"),
        (("--max-distractors", "5"), "need --distractors"),
        (("--distractors", "{folder}", "--distractor-copies", "-1"), "at least 0"),
        (("--distractors", "{folder}", "--max-distractors", "0"), "at least 1"),
        (("--distractors", "{folder}/missing"), "is not a directory"),
        (("--distractors", "{folder}"), "lead outside"),
    ],
)
def test_bad_distractor_options_are_command_errors(other_views, folder, tmp_path, args, message):
    write(tmp_path / "elsewhere.jpg", scene(40))
    (folder / "link.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    with pytest.raises(CommandError, match=message):
        evaluate(other_views, *(arg.format(folder=folder) for arg in args))
