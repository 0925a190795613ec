"""The shopper page: upload a photo, see the most similar products. Plain HTML forms; works without JavaScript.

Oversized and throttled requests never get here: UploadGuardMiddleware refuses them before the body is parsed.
"""
from __future__ import annotations

import base64
import io
import re

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_http_methods
from PIL import Image

from .backends.base import IndexUnavailable
from .forms import SearchForm
from .imaging import ImageRejected, read_limited
from .services.search import ImageUnavailable, UnknownImage, decode_query, more_like_this, search_by_image

PREVIEW_SIZE = (320, 320)
TEMPLATE = "visualsearch/search.html"
_IMAGE_ID = re.compile(r"[0-9]{1,18}")  # str.isdigit() would accept "²" and 5,000-digit ids


@require_http_methods(["GET", "POST"])
def search_page(request):
    form = SearchForm(request.POST or None, request.FILES or None)
    context = {"form": form, "result": None, "error": None, "preview": None}
    status = 200
    try:
        if request.method == "POST" and form.is_valid():
            data = read_limited(form.cleaned_data["image"], settings.VISUALSEARCH["MAX_UPLOAD_BYTES"])
            pixels = decode_query(data)  # once: the preview and the search share it
            context["preview"] = _preview_data_url(pixels)
            context["result"] = search_by_image(image=pixels, category=form.cleaned_data["category"])
        elif request.method == "GET" and _IMAGE_ID.fullmatch(request.GET.get("image_id", "")):
            # "More like this" links are on product pages: that product is no news to the shopper.
            context["result"] = more_like_this(image_id=int(request.GET["image_id"]), exclude_product=True)
    except UnknownImage as exc:
        context["error"], status = str(exc), 404
    except ImageUnavailable as exc:
        context["error"], status = str(exc), 409
    except ImageRejected as exc:
        context["error"], status = str(exc), 400
    except IndexUnavailable:
        context["error"], status = "Search is temporarily unavailable; please try again shortly.", 503
    return render(request, TEMPLATE, context, status=status)


def refusal_page(request, message: str, status: int):
    """The page with an empty form and why the request was refused (used before the body may be read)."""
    return render(request, TEMPLATE, {"form": SearchForm(), "result": None, "error": message, "preview": None},
                  status=status)  # fmt: skip


def _preview_data_url(pixels: Image.Image) -> str:
    """A small inline copy of the query photo: shown back to the shopper without storing their upload."""
    preview = pixels.copy()
    preview.thumbnail(PREVIEW_SIZE)
    buffer = io.BytesIO()
    preview.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
