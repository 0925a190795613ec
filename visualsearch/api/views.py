from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from .. import services
from ..backends.base import IndexUnavailable
from ..imaging import ImageRejected, read_limited
from ..services.search import UnknownImage
from .errors import PayloadTooLarge, ServiceUnavailable, UnsupportedImage
from .serializers import SearchInputSerializer, SearchOutputSerializer

# Multipart overhead allowance on top of the image size limit, for the early Content-Length check.
_ENVELOPE_BYTES = 64 * 1024


class VisualSearchApi(APIView):
    """Upload a photo (or name a stored one) and get the most similar products, one per product, best first."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "visual_search"

    @extend_schema(request=SearchInputSerializer, responses=SearchOutputSerializer)
    def post(self, request):
        max_bytes = settings.VISUALSEARCH["MAX_UPLOAD_BYTES"]
        _reject_oversized_body(request, max_bytes)
        serializer = SearchInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        params = dict(serializer.validated_data)
        upload = params.pop("image", None)
        try:
            image_bytes = read_limited(upload, max_bytes) if upload is not None else None
            result = services.search_by_image(image_bytes=image_bytes, **params)
        except ImageRejected as exc:
            raise _image_error(exc) from exc
        except UnknownImage as exc:
            raise exceptions.NotFound(str(exc)) from exc
        except IndexUnavailable as exc:
            raise ServiceUnavailable() from exc
        return Response(SearchOutputSerializer(result, context={"request": request}).data)


def _reject_oversized_body(request, max_bytes: int) -> None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise exceptions.ParseError("Bad Content-Length header.")
    if length > max_bytes + _ENVELOPE_BYTES:
        raise PayloadTooLarge(f"The request is larger than the {max_bytes // (1024 * 1024)} MB image limit.")


def _image_error(exc: ImageRejected) -> exceptions.APIException:
    if exc.code in ("too_large", "too_many_pixels"):
        return PayloadTooLarge(str(exc), code=exc.code)
    if exc.code == "not_an_image":
        return UnsupportedImage(str(exc))
    return exceptions.ValidationError({"image": [str(exc)]}, code=exc.code)
