import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_photos_without_a_hash_get_a_unique_placeholder_and_wait_for_reindex():
    """Rows bulk-created before the constraint have sha256 ''; the constraint must not fail on them."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("catalog", "0001_initial")])
    apps = executor.loader.project_state([("catalog", "0001_initial")]).apps
    product = apps.get_model("catalog", "Product").objects.create(relation_id="old", title="Old")
    ProductImage = apps.get_model("catalog", "ProductImage")
    rows = [("1.jpg", ""), ("2.jpg", ""), ("3.jpg", "a" * 64)]
    ProductImage.objects.bulk_create(  # sizes given: nothing reads the (absent) files
        [ProductImage(product=product, image=f"products/old/{name}", sha256=sha, width=1, height=1,
                      index_status="indexed") for name, sha in rows]  # fmt: skip
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    rows = ProductImage.objects.order_by("pk").values_list("pk", "sha256", "index_status")
    (one, sha1, status1), (two, sha2, status2), (_, sha3, status3) = rows
    assert (sha1, sha2) == (f"unhashed:{one}", f"unhashed:{two}") and status1 == status2 == "pending"
    assert (sha3, status3) == ("a" * 64, "indexed")
