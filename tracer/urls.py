from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from dashboard import report_views
from tracer import api, views

urlpatterns = [
    path("v1/traces", views.otlp_traces, name="otlp-traces"),
    path("v1/metrics", views.otlp_metrics, name="otlp-metrics"),
    path("api/v1/traces", api.traces_list, name="api-traces"),
    path("api/v1/traces/<str:trace_id>", api.trace_detail, name="api-trace"),
    path("api/v1/prices", api.prices_list, name="api-prices"),
    path("api/v1/export/<str:kind>.csv", report_views.api_export, name="api-export"),
    path("admin/", admin.site.urls),
    path("", include("dashboard.urls")),
]

handler400 = "dashboard.views.bad_request"
