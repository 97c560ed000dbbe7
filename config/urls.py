"""The site's routes: each app's own, in layer order (docs/architecture.md)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from dashboard import oidc

urlpatterns = [
    path("", include("tracer.urls")),
    path("", include("reports.urls")),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]

# Single sign-on (dashboard/oidc.py), only when a provider is configured. The names are the ones
# mozilla-django-oidc reverses.
if settings.OCTOTRACE_OIDC:
    urlpatterns += [
        path("oidc/authenticate/", oidc.AuthenticateView.as_view(), name="oidc_authentication_init"),
        path("oidc/callback/", oidc.CallbackView.as_view(), name="oidc_authentication_callback"),
    ]

handler400 = "dashboard.views.bad_request"
