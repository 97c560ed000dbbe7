"""The login page and who is logging in: the address login throttling (django-axes) counts
failures against, and the single sign-on button when a provider is configured (dashboard/oidc.py)."""

from __future__ import annotations

from typing import Any

from axes.helpers import get_client_username, get_cool_off
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

# The query string CallbackView sends the browser back to the login page with when SSO failed.
SSO_FAILED = "sso=failed"


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind OCTOTRACE_PROXY_COUNT proxies the address the
    outermost of them appended to X-Forwarded-For. Entries left of it are the client's own claims
    and are never trusted (a client could otherwise pick a fresh address for every guess)."""
    hops = settings.OCTOTRACE_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """What a locked-out login gets (AXES_LOCKOUT_CALLABLE): 429 and a page that says why, for how
    long, and who can lift it."""
    cool_off = get_cool_off(request)
    context = {
        "username": get_client_username(request, credentials) or "",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": int(cool_off.total_seconds() // 60),
    }
    response = render(request, "dashboard/locked_out.html", context, status=429)
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response


class LoginView(auth_views.LoginView):
    template_name = "dashboard/login.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["sso"] = settings.OCTOTRACE_OIDC
        context["sso_failed"] = settings.OCTOTRACE_OIDC and self.request.GET.get("sso") == "failed"
        return context
