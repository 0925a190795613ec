from tests.visualsearch.conftest import catalog  # noqa: F401  (the indexed six-product shop)
