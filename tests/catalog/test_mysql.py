"""MariaDB specifics, on the real server (production configuration: DATABASE_URL=mysql://...)."""
from __future__ import annotations

import pytest
from django.db import connection

from catalog.models import Product
from tests.services import require, uses_mysql

pytestmark = [pytest.mark.services, pytest.mark.mysql, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _mysql_only():
    require("MariaDB", uses_mysql(), "set DATABASE_URL=mysql://..., e.g. via `bash scripts/services.sh start`")


def test_connection_and_tables_are_utf8mb4():
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@character_set_connection")
        assert cursor.fetchone()[0] == "utf8mb4"
        cursor.execute(
            "SELECT table_collation FROM information_schema.tables WHERE table_schema = DATABASE() "
            "AND table_name = 'catalog_product'"
        )
        assert cursor.fetchone()[0].startswith("utf8mb4")


def test_four_byte_characters_survive(make_product):
    title = "Gâteau 🎂 蛋糕 𝒻𝒶𝓃𝒸𝓎"
    assert Product.objects.get(pk=make_product(title=title).pk).title == title


def test_longest_relation_id_with_four_byte_characters_is_unique(make_product):
    from django.db import IntegrityError

    relation_id = "🐈" * 255
    make_product(relation_id=relation_id)
    assert Product.objects.get(relation_id=relation_id)
    with pytest.raises(IntegrityError):
        make_product(relation_id=relation_id)
