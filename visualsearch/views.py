"""The shopper page: upload a photo, see the most similar products. Plain HTML forms; works without JavaScript."""
from __future__ import annotations

import base64
import io
import re
from types import SimpleNamespace

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_http_methods
from rest_framework.throttling import ScopedRateThrottle

from . import services
from .backends.base import IndexUnavailable
from .forms import SearchForm
from .imaging import ImageRejected, decode_image, read_limited
from .services.search import UnknownImage

PREVIEW_SIZE = (320, 320)
# The page runs the same expensive work as the API, so it shares the API's throttle bucket per client.
_THROTTLED_AS_API = SimpleNamespace(throttle_scope="visual_search")
_IMAGE_ID = re.compile(r"[0-9]{1,18}")  # str.isdigit() would accept "²" and 5,000-digit ids


@require_http_methods(["GET", "POST"])
def search_page(request):
    form = SearchForm(request.POST or None, request.FILES or None)
    context = {"form": form, "result": None, "error": None, "preview": None}
    status = 200
    searching = request.method == "POST" or "image_id" in request.GET
    if searching and not ScopedRateThrottle().allow_request(request, _THROTTLED_AS_API):
        context["error"] = "Too many searches from your address; please wait a minute and try again."
        return render(request, "visualsearch/search.html", context, status=429)
    try:
        if request.method == "POST" and form.is_valid():
            data = read_limited(form.cleaned_data["image"], settings.VISUALSEARCH["MAX_UPLOAD_BYTES"])
            context["preview"] = _preview_data_url(data)
            context["result"] = services.search_by_image(image_bytes=data, category=form.cleaned_data["category"])
        elif request.method == "GET" and _IMAGE_ID.fullmatch(request.GET.get("image_id", "")):
            context["result"] = services.search_by_image(image_id=int(request.GET["image_id"]))
    except (ImageRejected, UnknownImage) as exc:
        context["error"], status = str(exc), 400
    except IndexUnavailable:
        context["error"], status = "Search is temporarily unavailable; please try again shortly.", 503
    return render(request, "visualsearch/search.html", context, status=status)


def _preview_data_url(data: bytes) -> str:
    """A small inline copy of the query photo: shown back to the shopper without storing their upload."""
    image = decode_image(data, max_pixels=settings.VISUALSEARCH["MAX_PIXELS"])
    image.thumbnail(PREVIEW_SIZE)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
