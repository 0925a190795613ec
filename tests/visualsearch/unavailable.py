"""A backend whose server is down: it injects the failure services must survive (not a mock of a real server)."""
from visualsearch.backends.base import IndexUnavailable
from visualsearch.backends.embedded import EmbeddedIndex


class UnavailableIndex(EmbeddedIndex):
    in_process = False

    def _down(self, *args, **kwargs):
        raise IndexUnavailable("connection refused")

    upsert = delete = search = rebuild = _down
