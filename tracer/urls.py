"""The server core's routes: the OTLP receivers and the JSON read API."""

from __future__ import annotations

from django.urls import path

from tracer import api, views

urlpatterns = [
    path("v1/traces", views.otlp_traces, name="otlp-traces"),
    path("v1/metrics", views.otlp_metrics, name="otlp-metrics"),
    path("api/v1/traces", api.traces_list, name="api-traces"),
    path("api/v1/traces/<str:trace_id>", api.trace_detail, name="api-trace"),
    path("api/v1/traces/<str:trace_id>/spans/<str:span_id>", api.span_detail, name="api-span"),
    path("api/v1/prices", api.prices_list, name="api-prices"),
]
