from __future__ import annotations

import io
import json
import sqlite3

import pytest
from django.core.management import call_command

from catalog.models import IndexStatus, Product, ProductImage
from tests.conftest import encode, scene

from .http_server import Photos, Server

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def server():
    running = Server()
    yield running
    running.stop()


@pytest.fixture
def run(server, settings, media_root, django_capture_on_commit_callbacks):
    settings.CATALOG_IMPORT = {**settings.CATALOG_IMPORT, "ALLOWED_HOSTS": ["127.0.0.1"], "MAX_BYTES": 2_000_000}

    def run(*args) -> str:
        out = io.StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("import_catalog", *map(str, args), "--workers", "4", stdout=out, verbosity=0)
        return out.getvalue()

    return run


def write_csv(path, rows: list[dict]):
    import csv

    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=sorted({k for row in rows for k in row}))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_import_creates_products_with_indexed_photos(run, server, tmp_path):
    rows = [
        {"relation_id": "p1", "title": "Teapot", "category": "kitchen", "price": "12.50", "stock": "3",
         "images": f"{server.url('/photo/1.jpg')} | {server.url('/photo/2.jpg')}"},
        {"relation_id": "p2", "title": "Mug", "price": "", "is_active": "no", "image": server.url("/photo/3.jpg")},
    ]
    out = run(write_csv(tmp_path / "shop.csv", rows))
    assert "2 created" in out and "3 added" in out and "0 failure" in out
    teapot = Product.objects.get(relation_id="p1")
    assert (teapot.title, str(teapot.price), teapot.stock, teapot.category) == ("Teapot", "12.50", 3, "kitchen")
    assert [p.position for p in teapot.images.all()] == [0, 1]
    assert not Product.objects.get(relation_id="p2").is_active
    assert set(ProductImage.objects.values_list("index_status", flat=True)) == {IndexStatus.INDEXED}


def test_a_rerun_updates_in_place_and_downloads_nothing_again(run, server, tmp_path):
    rows = [{"relation_id": "p1", "title": "Teapot", "price": "12.50", "image": server.url("/photo/1.jpg")}]
    run(write_csv(tmp_path / "a.csv", rows))
    Photos.hits.clear()
    rows[0]["price"] = "9.99"
    out = run(write_csv(tmp_path / "b.csv", rows))
    assert "1 updated" in out and "0 added, 1 kept" in out
    assert Photos.hits == []  # the photo's source was imported before: not fetched, not embedded again
    assert Product.objects.count() == 1 and ProductImage.objects.count() == 1
    assert str(Product.objects.get().price) == "9.99"
    assert "1 unchanged" in run(write_csv(tmp_path / "c.csv", rows))


def test_photos_no_longer_listed_are_removed_but_hand_uploaded_ones_stay(run, server, tmp_path, make_image):
    run(write_csv(tmp_path / "a.csv", [{"relation_id": "p1", "title": "T",
                                         "images": f"{server.url('/photo/1.jpg')} {server.url('/photo/2.jpg')}"}]))
    by_hand = make_image(Product.objects.get(), seed=77)
    out = run(write_csv(tmp_path / "b.csv", [{"relation_id": "p1", "title": "T", "image": server.url("/photo/2.jpg")}]))
    assert "1 removed" in out
    assert {p.source_url for p in ProductImage.objects.all()} == {server.url("/photo/2.jpg"), ""}
    assert ProductImage.objects.filter(pk=by_hand.pk).exists()


def test_failures_are_reported_row_by_row_without_stopping_the_others(run, server, tmp_path):
    rows = [
        {"relation_id": "ok", "title": "Fine", "image": server.url("/photo/5.jpg")},
        {"relation_id": "", "title": "No id"},
        {"relation_id": "bad-price", "title": "X", "price": "cheap"},
        {"relation_id": "missing", "title": "404", "image": server.url("/nope.jpg")},
        {"relation_id": "text", "title": "Lies", "image": server.url("/text-as-jpeg")},
        {"relation_id": "internal", "title": "SSRF", "image": "http://169.254.169.254/latest/meta-data/"},
        {"relation_id": "huge", "title": "Big", "image": server.url("/endless")},
        {"relation_id": "local", "title": "Escape", "image": "../../etc/passwd"},
    ]
    report = tmp_path / "failures.csv"
    out = run(write_csv(tmp_path / "shop.csv", rows), "--report", report)
    codes = {line.split(",")[1]: line.split(",")[3] for line in report.read_text().splitlines()[1:]}
    assert codes == {"": "bad_row", "bad-price": "bad_row", "missing": "http_error", "text": "not_an_image",
                     "internal": "refused_address", "huge": "too_large", "local": "bad_url"}
    assert "7 failure(s)" in out
    assert Product.objects.get(relation_id="ok").images.count() == 1
    assert Product.objects.filter(relation_id="missing").exists()  # the product, without the photo that failed


def test_json_lines_with_local_photos_under_the_base_dir(run, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(encode(scene(8)))
    lines = [{"relation_id": "j1", "title": "Lamp", "price": 30, "images": ["photos/a.jpg"]}, "not json"]
    path = tmp_path / "shop.jsonl"
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines))
    out = run(path)
    assert "1 created" in out and "1 added" in out and "1 failure" in out
    assert ProductImage.objects.get().source_url == "photos/a.jpg"


def test_from_another_database_one_row_per_photo(run, server, tmp_path):
    """The classic recipe's table: images(id, relation_id, photo) with paths relative to the shop's domain."""
    db = tmp_path / "legacy.sqlite3"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, relation_id TEXT, photo TEXT)")
        connection.executemany("INSERT INTO images (relation_id, photo) VALUES (?, ?)",
                               [("r1", "/photo/1.jpg"), ("r1", "/photo/2.jpg"), ("r2", "/photo/3.jpg")])
    out = run("--from-db", f"sqlite:///{db}", "--query",
              "SELECT relation_id, photo AS image FROM images ORDER BY relation_id, id",
              "--base-url", server.url("/"))
    assert "2 created" in out and "3 added" in out
    assert Product.objects.get(relation_id="r1").images.count() == 2
    assert Product.objects.get(relation_id="r2").title == "r2"  # no title column: titled by its relation_id


def test_an_import_that_crashed_resumes_without_duplicates_or_downloading_again(run, server, tmp_path, monkeypatch):
    from catalog import importing

    rows = [{"relation_id": f"p{n}", "title": f"T{n}", "image": server.url(f"/photo/{n}.jpg")} for n in range(4)]
    path = write_csv(tmp_path / "shop.csv", rows)
    real_apply = importing._apply

    def crash_at_p2(row, *args):
        if row.relation_id == "p2":
            raise KeyboardInterrupt("the process dies")
        return real_apply(row, *args)

    monkeypatch.setattr(importing, "_apply", crash_at_p2)
    with pytest.raises(KeyboardInterrupt):
        run(path, "--batch", "1")
    assert sorted(Product.objects.values_list("relation_id", flat=True)) == ["p0", "p1"]  # batches committed
    monkeypatch.setattr(importing, "_apply", real_apply)
    Photos.hits.clear()
    out = run(path, "--batch", "1")
    assert "2 created" in out and "2 unchanged" in out
    assert sorted(Photos.hits) == ["/photo/2.jpg", "/photo/3.jpg"]
    assert Product.objects.count() == 4 and ProductImage.objects.count() == 4


@pytest.mark.django_db(transaction=True)  # the job's thread reads what the request committed
def test_staff_import_from_the_admin_and_read_the_report(admin_client, server, settings, media_root, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    from catalog import import_jobs
    from catalog.models import CatalogImport

    settings.CATALOG_IMPORT = {**settings.CATALOG_IMPORT, "ALLOWED_HOSTS": ["127.0.0.1"]}
    csv_text = ("relation_id,title,image\n"
                f"a1,Kettle,{server.url('/photo/1.jpg')}\n"
                "a2,Local file,/etc/passwd\n")  # local paths are never read from an admin upload
    assert "Import catalog" in admin_client.get(reverse("admin:catalog_product_changelist")).content.decode()
    response = admin_client.post(reverse("admin:catalog_catalogimport_add"),
                                 {"file": SimpleUploadedFile("shop.csv", csv_text.encode(), "text/csv")})
    assert response.status_code == 302
    import_jobs._worker.submit(lambda: None).result(timeout=60)  # the job has finished
    job = CatalogImport.objects.get()
    assert job.status == CatalogImport.Status.DONE and (job.rows_done, job.rows_total) == (2, 2)
    assert job.summary["created"] == 2 and [f["code"] for f in job.failures] == ["bad_url"]
    page = admin_client.get(reverse("admin:catalog_catalogimport_change", args=[job.pk])).content.decode()
    assert "2 of 2 rows" in page and "/etc/passwd" in page and "bad_url" in page
    assert Product.objects.get(relation_id="a1").images.count() == 1


@pytest.mark.services
@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_from_a_mysql_table_paged_with_a_server_side_cursor(run, server, monkeypatch):
    """The classic recipe's shop: a MariaDB table of photos, read a page at a time (DB_PAGE rows)."""
    from django.db import connection

    from catalog.management.commands import import_catalog
    from tests.services import database_url, require, uses_mysql

    require("MariaDB", uses_mysql(), "set DATABASE_URL=mysql://... (scripts/services.sh)")
    monkeypatch.setattr(import_catalog, "DB_PAGE", 2)  # several pages even for a few rows
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE legacy_images (id INT PRIMARY KEY AUTO_INCREMENT, relation_id VARCHAR(50), "
                       "title VARCHAR(100), photo VARCHAR(200))")
        cursor.executemany("INSERT INTO legacy_images (relation_id, title, photo) VALUES (%s, %s, %s)",
                           [("m1", "Mug", "/photo/1.jpg"), ("m1", "Mug", "/photo/2.jpg"), ("m2", "Vase", "/photo/3.jpg"),
                            ("m3", "Bowl", "/photo/4.jpg"), ("m3", "Bowl", "/photo/5.jpg")])
    try:
        out = run("--from-db", database_url(), "--query", "SELECT relation_id, title, photo AS image FROM legacy_images "
                  "ORDER BY relation_id, id", "--base-url", server.url("/"))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE legacy_images")
    assert "3 created" in out and "5 added" in out and "0 failure" in out
    assert [p.images.count() for p in Product.objects.order_by("relation_id")] == [2, 1, 2]
