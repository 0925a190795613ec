"""The only place with visual-search logic; views, admin actions, commands and tasks call these."""
from .indexing import embed_missing, index_pending, rebuild_index, sync_images, sync_products  # noqa: F401
from .search import ProductMatch, SearchResult, search_by_image  # noqa: F401
