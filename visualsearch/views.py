"""The shopper page: upload a photo, see the matching products. Plain HTML forms; works without JavaScript
(search.js adds drag-and-drop, paste, a preview, client-side downscaling and "load more" in place).

A search is posted once, then redirected (303) to a results URL holding a short-lived handle of the photo and the
filters: reloading, sharing, changing filters and paging re-run the search without uploading again.
Oversized and throttled requests never get here: UploadGuardMiddleware refuses them before the body is parsed.
"""
from __future__ import annotations

import base64
import io
import re
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from PIL import Image

from . import query_handles
from .backends.base import IndexUnavailable
from .forms import SearchForm
from .imaging import ImageRejected, read_limited
from .services import unmatched
from .services.search import ImageUnavailable, UnknownImage, decode_query, more_like_this, search_by_image
from .templatetags.visualsearch import band_of

PREVIEW_SIZE = (320, 320)
RESULTS_PER_PAGE = 24
NEAREST_SHOWN = 8  # when nothing is close: the nearest products, under their own heading
MAX_PAGE = 100
TEMPLATE = "visualsearch/search.html"
_ID = re.compile(r"[0-9]{1,18}")  # str.isdigit() would accept "²" and 5,000-digit ids


class ExpiredQuery(LookupError):
    pass


@require_http_methods(["GET", "POST"])
def search_page(request):
    if request.method == "POST":
        return _post(request)
    form = SearchForm(request.GET or None, initial={"q": request.GET.get("q", "")})
    context = {"form": form, "result": None, "error": None, "preview": None}
    asked = "q" in request.GET or _ID.fullmatch(request.GET.get("image_id", ""))
    if not asked or not form.is_valid():
        return render(request, TEMPLATE, context, status=400 if form.errors else 200)
    page = _page_number(request.GET.get("page"))
    try:
        result = _results(request.GET, form, page, context)
    except ExpiredQuery:
        return _error(request, context, "This search has expired. Choose your photo again.", 410)
    except UnknownImage as exc:
        return _error(request, context, str(exc), 404)
    except ImageUnavailable as exc:
        return _error(request, context, str(exc), 409)
    except ImageRejected as exc:
        return _error(request, context, str(exc), 400)
    except IndexUnavailable:
        return _error(request, context, "Search is temporarily unavailable; please try again shortly.", 503)
    context.update(_present(result.matches, page))
    context.update(result=result, next_url=_next_url(request.GET, page) if context["has_more"] else None)
    if "photo" in context and page == 1 and not context["close"]:
        _record_unmatched(request.GET["q"], form, result, context.pop("photo"))
    return render(request, TEMPLATE, context)


def _record_unmatched(handle: str, form: SearchForm, result, photo: bytes) -> None:
    nearest = result.matches[0] if result.matches else None
    unmatched.record(source="page", photo_key=handle, filters=form.filter_query(), photo_jpeg=photo,
                     best_score=nearest.score if nearest else None,
                     nearest_product_id=nearest.product.pk if nearest else None)


def _post(request):
    form = SearchForm(request.POST, request.FILES, require_photo=True)
    context = {"form": form, "result": None, "error": None, "preview": None}
    if not form.is_valid():
        return render(request, TEMPLATE, context, status=400)
    if form.cleaned_data["photo"]:
        try:
            data = read_limited(form.cleaned_data["photo"], settings.VISUALSEARCH["MAX_UPLOAD_BYTES"])
            handle = query_handles.store(decode_query(data))
        except ImageRejected as exc:
            form.add_error("image", str(exc))
            return render(request, TEMPLATE, context, status=400)
    else:  # new filters for the photo already shown
        handle = form.cleaned_data["q"]
        if query_handles.load(handle) is None:
            return _error(request, context, "This search has expired. Choose your photo again.", 410)
    see_other = HttpResponseRedirect(f"{reverse('visualsearch:search')}?{urlencode({'q': handle, **form.filter_query()})}")
    see_other.status_code = 303  # the results are a GET: reloading them never re-posts the photo
    return see_other


def _results(params, form: SearchForm, page: int, context: dict):
    paging = {"limit": RESULTS_PER_PAGE, "offset": (page - 1) * RESULTS_PER_PAGE, "threshold": -1.0}
    if _ID.fullmatch(params.get("image_id", "")):
        # "More like this" links are on product pages: that product is no news to the shopper.
        return more_like_this(image_id=int(params["image_id"]), exclude_product=True, **paging, **form.filters())
    data = query_handles.load(params.get("q", ""))
    if data is None:
        raise ExpiredQuery()
    pixels = decode_query(data)
    context["preview"], context["photo"] = _preview_data_url(pixels), data
    return search_by_image(image=pixels, box=form.cleaned_data.get("box"), **paging, **form.filters())


def _present(matches: list, page: int) -> dict:
    """Close matches (recognised, or above the threshold) as the answer; when a first page has none, the nearest
    products under their own heading rather than an empty page. More pages only while answers stay close."""
    close = [m for m in matches if band_of(m) != "far"]
    nearest = matches[:NEAREST_SHOWN] if not close and page == 1 else []
    has_more = len(matches) == RESULTS_PER_PAGE and len(close) == len(matches) and page < MAX_PAGE
    return {"close": close, "nearest": nearest, "has_more": has_more, "page": page}


def _next_url(params, page: int) -> str:
    query = {key: params[key] for key in ("q", "image_id", "category", "min_price", "max_price", "in_stock", "box")
             if params.get(key)}
    return f"{reverse('visualsearch:search')}?{urlencode({**query, 'page': page + 1})}"


def _page_number(raw: str | None) -> int:
    return min(int(raw), MAX_PAGE) if raw and _ID.fullmatch(raw) and int(raw) >= 1 else 1


def _error(request, context: dict, message: str, status: int):
    context["error"] = message
    return render(request, TEMPLATE, context, status=status)


def refusal_page(request, message: str, status: int):
    """The page with an empty form and why the request was refused (used before the body may be read)."""
    return render(request, TEMPLATE, {"form": SearchForm(), "result": None, "error": message, "preview": None},
                  status=status)  # fmt: skip


def _preview_data_url(pixels: Image.Image) -> str:
    """A small inline copy of the query photo: shown back to the shopper without a URL to their photo."""
    preview = pixels.copy()
    preview.thumbnail(PREVIEW_SIZE)
    buffer = io.BytesIO()
    preview.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
