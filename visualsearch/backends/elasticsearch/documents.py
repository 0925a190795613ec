"""The Elasticsearch document for one product photo, declared with django-elasticsearch-dsl.

Only the mapping is taken from here. The document is deliberately *not* registered with django-elasticsearch-dsl's
registry, so its real-time signal processor never sees ProductImage: that processor writes before the transaction
commits and refreshes on every save. Our writes go through visualsearch's on-commit path, in bulk.
"""
from __future__ import annotations

from django_elasticsearch_dsl import Document, fields
from elasticsearch.dsl import field as dsl_field

from catalog.models import ProductImage


class DenseVectorField(fields.DEDField, dsl_field.DenseVector):
    """django-elasticsearch-dsl has no released dense_vector field (its issue #405, PR #489)."""


class ProductImageDocument(Document):
    image_id = fields.LongField()
    product_id = fields.LongField()  # collapse key: one hit per product
    category = fields.KeywordField()
    is_active = fields.BooleanField()
    price = fields.DoubleField()
    in_stock = fields.BooleanField()
    indexed_at_us = fields.LongField(index=False)

    class Django:
        model = ProductImage
        fields: list[str] = []


# Fields added to the mapping after indexes were first built: put on a live index (an additive change) before the
# first write, since the mapping is strict. Its older documents lack them until `reindex --products`.
ADDED_FIELDS = ("price", "in_stock")


def mapping(*, dim: int, index_options: dict) -> dict:
    body = ProductImageDocument._doc_type.mapping.to_dict()
    vector = DenseVectorField(dims=dim, index=True, similarity="dot_product", index_options=index_options)
    body["properties"]["vector"] = vector.to_dict()
    # Visual words as terms: a `text` field (not `keyword`, which keeps no term frequencies or norms, so BM25 would
    # collapse to summed IDFs) with a whitespace analyzer, frequencies but no positions.
    body["properties"]["words"] = {"type": "text", "analyzer": "whitespace", "index_options": "freqs", "norms": True}
    body["_source"] = {"excludes": ["vector", "words"]}  # results need ids only; vectors and words live in the database
    body["dynamic"] = "strict"
    return body
