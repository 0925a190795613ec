from __future__ import annotations

import pytest

from tests.conftest import scene
from visualsearch.evaluation.dataset import DatasetError, load_dataset

PHOTO = b"not decoded while validating"


def test_reads_rows_roles_and_groups(make_dataset):
    root = make_dataset([
        ("a1.jpg", "a", "gallery", scene(1)),
        ("a2.jpg", "a", "query", scene(2)),
        ("b1.jpg", "b", "both", scene(3)),
        ("b2.jpg", "b", "BOTH", scene(4)),  # roles are case-insensitive
    ])  # fmt: skip
    dataset = load_dataset(root)
    assert [r.relpath for r in dataset.gallery] == ["images/a1.jpg", "images/b1.jpg", "images/b2.jpg"]
    assert [r.relpath for r in dataset.queries] == ["images/a2.jpg", "images/b1.jpg", "images/b2.jpg"]
    assert dataset.groups == ["a", "b"] and not dataset.all_both
    assert dataset.rows[0].path == root / "images" / "a1.jpg" and dataset.rows[0].line == 2


def test_all_both_is_the_ukbench_setting(make_dataset):
    dataset = load_dataset(make_dataset([("1.jpg", "a", "both", PHOTO), ("2.jpg", "a", "both", PHOTO)]))
    assert dataset.all_both


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([("a.jpg", "a", "gallery", PHOTO)], "path,group", "missing column(s) role"),
        ([("a.jpg", "a", "gallery", PHOTO), ("b.jpg", "a", "probe", PHOTO)], None, "line 3: unknown role 'probe'"),
        ([("a.jpg", "a", "gallery", PHOTO), ("b.jpg", "a", "query", None)], None, "images/b.jpg (line 3)"),
        ([("a.jpg", "a", "gallery", PHOTO), ("b.jpg", "b", "query", PHOTO)], None, "1 group(s) with queries but no"),
        ([("a.jpg", "a", "both", PHOTO), ("b.jpg", "b", "gallery", PHOTO)], None, "'both' rows): a"),  # only itself
        ([("a.jpg", "a", "gallery", PHOTO), ("b.jpg", "a", "gallery", PHOTO)], None, "no 'query' or 'both' rows"),
        ([("a.jpg", "", "gallery", PHOTO)], None, "line 2: empty path or group"),
        ([], None, "lists no photos"),
    ],
)
def test_bad_datasets_are_explained(make_dataset, rows, header, message):
    root = make_dataset(rows, **({"header": header} if header else {}))
    with pytest.raises(DatasetError) as failure:
        load_dataset(root)
    assert message in str(failure.value)


def test_a_photo_listed_twice_is_refused(make_dataset):
    root = make_dataset([("a.jpg", "a", "gallery", PHOTO), ("q.jpg", "a", "query", PHOTO)])
    with (root / "groups.csv").open("a") as csv:
        csv.write("images/q.jpg,a,query\n")
    with pytest.raises(DatasetError, match=r"listed more than once: images/q.jpg \(lines 3 and 4\)"):
        load_dataset(root)


def test_many_problems_are_summarised(make_dataset):
    root = make_dataset([("g.jpg", "a", "gallery", PHOTO)] + [(f"{n}.jpg", "a", "query", None) for n in range(8)])
    with pytest.raises(DatasetError, match=r"^8 file\(s\) listed .* and 3 more$"):
        load_dataset(root)


def test_missing_folder_or_csv(tmp_path):
    with pytest.raises(DatasetError, match="is not a directory"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="has no groups.csv"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("escape", ["../outside.jpg", "images/../../outside.jpg", "{abs}", "images/link.jpg"])
def test_paths_outside_the_dataset_folder_are_refused(make_dataset, tmp_path, escape):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(PHOTO)
    root = make_dataset([("a.jpg", "a", "gallery", PHOTO), ("q.jpg", "a", "query", PHOTO)])
    (root / "images" / "link.jpg").symlink_to(outside)  # a symlink is an escape too, however it got there
    with (root / "groups.csv").open("a") as csv:
        csv.write(f"{escape.format(abs=outside)},a,query\n")
    with pytest.raises(DatasetError, match=r"line 4: .* is outside the dataset folder"):
        load_dataset(root)
