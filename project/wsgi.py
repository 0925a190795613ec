"""WSGI entry point (also what `runserver` serves)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_wsgi_application()

# Build the CNN and load the index in the background, starting at this process's first request: after a
# pre-forking server has forked, never in its parent.
from visualsearch.warmup import warm_up_on_first_request  # noqa: E402

warm_up_on_first_request()
