from .backend import ElasticsearchIndex  # noqa: F401
