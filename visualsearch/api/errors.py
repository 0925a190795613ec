"""Every API error is JSON: {"error": {"code": ..., "message": ..., "fields": {...}}}, never an HTML page."""
from __future__ import annotations

from django.core.exceptions import SuspiciousOperation
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.views import exception_handler


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Search is temporarily unavailable; please try again shortly."
    default_code = "unavailable"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class UnsupportedImage(exceptions.APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_code = "not_an_image"


class Gone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_code = "expired"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def json_exception_handler(exc, context):
    if isinstance(exc, SuspiciousOperation):  # e.g. too many multipart fields: Django would answer with HTML
        exc = exceptions.ParseError("The request could not be parsed.")
    response = exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500
    response.data = {"error": _error_body(exc, response.data)}
    return response


def _error_body(exc, data) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        fields = data if isinstance(data, dict) else {"non_field_errors": data}
        return {"code": "invalid", "message": _first_message(fields), "fields": fields}
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    detail = data.get("detail", data) if isinstance(data, dict) else data
    return {"code": codes if isinstance(codes, str) else "error", "message": str(detail)}


def _first_message(fields: dict) -> str:
    for name, messages in fields.items():
        message = messages[0] if isinstance(messages, list) and messages else messages
        return str(message) if name == "non_field_errors" else f"{name}: {message}"
    return "Invalid input."


def json_error(code: str, message: str, status: int) -> JsonResponse:
    """The same error body for answers given outside DRF (URL errors, the upload guard middleware)."""
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def json_not_found(request, exception=None):
    return json_error("not_found", "Not found.", 404)


def json_server_error(request):
    return json_error("server_error", "Internal error.", 500)
