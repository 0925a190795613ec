from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from ..backends.base import IndexUnavailable
from ..imaging import ImageRejected, read_limited
from ..services.search import ImageUnavailable, SearchResult, UnknownImage, more_like_this, search_by_image
from .errors import Conflict, PayloadTooLarge, ServiceUnavailable, UnsupportedImage
from .serializers import SearchInputSerializer, SearchOutputSerializer


class VisualSearchApi(APIView):
    """Upload a photo (or name a stored one) and get the most similar products, one per product, best first."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "visual_search"

    @extend_schema(request=SearchInputSerializer, responses=SearchOutputSerializer)
    def post(self, request):
        # The body's size was checked from its headers by UploadGuardMiddleware, then DRF throttled: only now parse.
        serializer = SearchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = _search(**serializer.validated_data)
        except ImageUnavailable as exc:
            raise Conflict(str(exc), code=exc.code) from exc
        except ImageRejected as exc:
            raise _image_error(exc) from exc
        except UnknownImage as exc:
            raise exceptions.NotFound(str(exc)) from exc
        except IndexUnavailable as exc:
            raise ServiceUnavailable() from exc
        return Response(SearchOutputSerializer(result, context={"request": request}).data)


def _search(*, image=None, image_id=None, **params) -> SearchResult:
    if image_id is not None:
        return more_like_this(image_id=image_id, **params)  # only photos shoppers may see, never the photo itself
    return search_by_image(image_bytes=read_limited(image, settings.VISUALSEARCH["MAX_UPLOAD_BYTES"]), **params)


def _image_error(exc: ImageRejected) -> exceptions.APIException:
    if exc.code in ("too_large", "too_many_pixels"):
        return PayloadTooLarge(str(exc), code=exc.code)
    if exc.code == "not_an_image":
        return UnsupportedImage(str(exc))
    return exceptions.ValidationError({"image": [str(exc)]}, code=exc.code)
