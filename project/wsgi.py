"""WSGI entry point (also what `runserver` serves)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_wsgi_application()

# Build the CNN and load the index in the background, so the first shopper does not wait seconds for it.
from visualsearch.warmup import warm_up_in_background  # noqa: E402

warm_up_in_background()
