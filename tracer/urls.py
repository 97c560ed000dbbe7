from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tracer import views

urlpatterns = [
    path("v1/traces", views.otlp_traces, name="otlp-traces"),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]
