"""Refuse a search request before anything reads its body: too large, of unknown length, or throttled.

Django parses a multipart body, spooling files over FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file, the first
time anything reads ``request.POST``, and CsrfViewMiddleware does that in its ``process_view``. So the checks run
in a ``process_view`` listed just before it, in this order: size (from the headers), throttle, then parsing.
The API throttles itself (DRF, before it parses); the shopper page is throttled here, in the API's bucket.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle

from .api.errors import json_error
from .views import refusal_page

# Multipart overhead allowed on top of the image size limit: boundaries, part headers, the other form fields.
ENVELOPE_BYTES = 64 * 1024
PAGE, API = "visualsearch:search", "api-search"  # URL names of the endpoints that take uploads
# The page runs the same expensive work as the API, so it shares the API's throttle bucket per client.
_THROTTLED_AS_API = SimpleNamespace(throttle_scope="visual_search")


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    retry_after: int | None = None


class UploadGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        endpoint = request.resolver_match.view_name
        if endpoint not in (PAGE, API):
            return None
        refusal = body_refusal(request) or (page_throttle_refusal(request) if endpoint == PAGE else None)
        return None if refusal is None else _respond(request, refusal, as_json=endpoint == API)


def body_refusal(request) -> Refusal | None:
    """From the headers alone. A POST without Content-Length (chunked) is refused: its size is unknown."""
    header = request.META.get("CONTENT_LENGTH")
    if not header:
        if request.method == "POST":
            return Refusal(411, "length_required", "Send the upload with a Content-Length header.")
        return None
    try:
        length = int(header)
    except ValueError:
        length = -1
    if length < 0:
        return Refusal(400, "invalid", "Bad Content-Length header.")
    max_bytes = settings.VISUALSEARCH["MAX_UPLOAD_BYTES"]
    if length > max_bytes + ENVELOPE_BYTES:
        return Refusal(413, "too_large", f"The request is larger than the {max_bytes / 2**20:.3g} MB image limit.")
    return None


def page_throttle_refusal(request) -> Refusal | None:
    searching = request.method == "POST" or "image_id" in request.GET or "q" in request.GET
    throttle = ScopedRateThrottle()
    if not searching or throttle.allow_request(request, _THROTTLED_AS_API):
        return None
    wait = throttle.wait()
    return Refusal(429, "throttled", "Too many searches from your address; please wait a minute and try again.",
                   retry_after=max(1, round(wait)) if wait is not None else None)  # fmt: skip


def _respond(request, refusal: Refusal, *, as_json: bool):
    if as_json:
        response = json_error(refusal.code, refusal.message, refusal.status)
    else:
        response = refusal_page(request, refusal.message, refusal.status)
    if refusal.retry_after:
        response["Retry-After"] = str(refusal.retry_after)
    return response
