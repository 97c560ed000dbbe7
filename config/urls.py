"""The site's routes: each app's own, in layer order (docs/architecture.md)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("tracer.urls")),
    path("", include("reports.urls")),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]

handler400 = "dashboard.views.bad_request"
