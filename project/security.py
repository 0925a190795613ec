"""Site-wide protections Django 5.2 does not ship: a Content-Security-Policy header, and a pause on admin logins
after repeated failures (per client address and per username, counted in the cache)."""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpResponse
from django.urls import reverse
from rest_framework.throttling import BaseThrottle

_EXEMPT_FROM_CSP = ("/api/",)  # Swagger UI and DRF's browsable pages run inline scripts


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        html = response.get("Content-Type", "").startswith("text/html")
        if html and not request.path.startswith(_EXEMPT_FROM_CSP):
            response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


class AdminLoginThrottleMiddleware:
    """Refuse admin login attempts (429) while the client address or the username has too many recent failures."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and request.path == reverse("admin:login") and _paused(request):
            minutes = max(1, settings.ADMIN_LOGIN_PAUSE_S // 60)
            return HttpResponse(f"Too many failed logins. Try again in {minutes} minutes.", status=429,
                                content_type="text/plain; charset=utf-8",
                                headers={"Retry-After": str(settings.ADMIN_LOGIN_PAUSE_S)})
        return self.get_response(request)


def _keys(request, username: str | None) -> list[str]:
    # The client address as the API's throttle sees it (NUM_PROXIES: X-Forwarded-For only from trusted proxies).
    address = BaseThrottle().get_ident(request)
    keys = [f"admin-login:addr:{address}"]
    if username:
        keys.append("admin-login:user:" + hashlib.sha256(username.lower().encode()).hexdigest()[:32])
    return keys


def _paused(request) -> bool:
    limit = settings.ADMIN_LOGIN_FAILURES
    return any(cache.get(key, 0) >= limit for key in _keys(request, request.POST.get("username")))


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs) -> None:
    if request is None:
        return
    for key in _keys(request, credentials.get("username")):
        cache.add(key, 0, timeout=settings.ADMIN_LOGIN_PAUSE_S)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=settings.ADMIN_LOGIN_PAUSE_S)


@receiver(user_logged_in)
def _reset(sender, request=None, user=None, **kwargs) -> None:
    if request is not None and user is not None:
        cache.delete(_keys(request, user.get_username())[-1])  # the username's count; the address keeps its own
