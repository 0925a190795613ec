from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from PIL import Image
from rest_framework import exceptions
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from .. import query_handles
from ..backends.base import IndexUnavailable
from ..imaging import ImageRejected, read_limited
from ..services import unmatched
from ..services.search import (
    EXACT, ImageUnavailable, SearchResult, UnknownImage, decode_query, more_like_this, search_by_image,
)
from .errors import Conflict, Gone, PayloadTooLarge, ServiceUnavailable, UnsupportedImage
from .serializers import SearchInputSerializer, SearchOutputSerializer



class VisualSearchApi(APIView):
    """Upload a photo (or name a stored one) and get the most similar products, one per product, best first.
    GET takes the same parameters except the file: a `query` handle or `image_id` (the `next` links)."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "visual_search"

    @extend_schema(request=SearchInputSerializer, responses=SearchOutputSerializer)
    def post(self, request):
        # The body's size was checked from its headers by UploadGuardMiddleware, then DRF throttled: only now parse.
        return self._answer(request, request.data)

    @extend_schema(parameters=[SearchInputSerializer(partial=True)], responses=SearchOutputSerializer)
    def get(self, request):
        return self._answer(request, request.query_params)

    def _answer(self, request, data):
        serializer = SearchInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        params = serializer.validated_data
        try:
            result, handle, pixels = _search(**params)
        except ImageUnavailable as exc:
            raise Conflict(str(exc), code=exc.code) from exc
        except ImageRejected as exc:
            raise _image_error(exc) from exc
        except UnknownImage as exc:
            raise exceptions.NotFound(str(exc)) from exc
        except IndexUnavailable as exc:
            raise ServiceUnavailable() from exc
        if pixels is not None and params["offset"] == 0:
            _record_if_unmatched(result, params, handle, pixels)
        context = {"request": request, "query": handle,
                   "next": _next_url(request, handle, params) if len(result.matches) == params["limit"] else None}
        return Response(SearchOutputSerializer(result, context=context).data)


def _search(*, image=None, image_id=None, query=None, **params) -> tuple[SearchResult, str | None, Image.Image | None]:
    """The result, the photo's handle (kept only when a next page may exist: encoding it costs a few ms) and the
    decoded photo (None for ``image_id``)."""
    if image_id is not None:
        return more_like_this(image_id=image_id, **params), None, None  # never the photo itself
    if query is not None:
        data = query_handles.load(query)
        if data is None:
            raise Gone("This query has expired: upload the photo again.", code="expired")
        pixels = decode_query(data)
    else:
        pixels = decode_query(read_limited(image, settings.VISUALSEARCH["MAX_UPLOAD_BYTES"]))
    result = search_by_image(image=pixels, **params)
    if query is None and len(result.matches) == params["limit"]:
        query = query_handles.store(pixels)
    return result, query, pixels


def _record_if_unmatched(result: SearchResult, params: dict, handle: str | None, pixels: Image.Image) -> None:
    """Searches whose best product is not close (not recognised, under the shop's threshold) go to the report,
    keyed by the photo (its handle, or its hash: computed only here, off the path of searches that found something)."""
    threshold = settings.VISUALSEARCH["SEARCH_THRESHOLD"]
    if any(m.match == EXACT or m.score >= threshold for m in result.matches):
        return
    photo_key = handle or hashlib.sha256(pixels.tobytes()).hexdigest()[:32]
    scores = [(m.score, m.product.pk) for m in result.matches]
    if result.nearest is not None:
        scores.append((result.nearest.score, result.nearest.product_id))
    best, nearest = max(scores, default=(None, None))
    filters = {"category": params.get("category"), "min_price": params.get("min_price"),
               "max_price": params.get("max_price"), "in_stock": params.get("in_stock_only"),
               "box": str(params["box"]) if params.get("box") else None}
    unmatched.record(source="api", photo_key=photo_key, filters=filters, best_score=best,
                     nearest_product_id=nearest)


def _next_url(request, handle: str | None, params: dict) -> str:
    """The same search one page further, as a GET (the photo itself travels as its `query` handle)."""
    carried = {"query": handle, "image_id": params.get("image_id"), "threshold": params.get("threshold"),
               "category": params.get("category") or None, "min_price": params.get("min_price"),
               "max_price": params.get("max_price"), "in_stock": "true" if params.get("in_stock_only") else None,
               "box": str(params["box"]) if params.get("box") else None,
               "limit": params["limit"], "offset": params["offset"] + params["limit"]}
    query = urlencode({key: value for key, value in carried.items() if value is not None})
    return request.build_absolute_uri(f"{reverse('api-search')}?{query}")


def _image_error(exc: ImageRejected) -> exceptions.APIException:
    if exc.code in ("too_large", "too_many_pixels"):
        return PayloadTooLarge(str(exc), code=exc.code)
    if exc.code == "not_an_image":
        return UnsupportedImage(str(exc))
    return exceptions.ValidationError({"image": [str(exc)]}, code=exc.code)
