"""The site's routes: each app's own, in layer order (docs/architecture.md)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from dashboard import report_views

urlpatterns = [
    path("", include("tracer.urls")),
    path("api/v1/export/<str:kind>.csv", report_views.api_export, name="api-export"),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]

handler400 = "dashboard.views.bad_request"
