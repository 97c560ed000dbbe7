"""The server core's routes: the OTLP receivers and the JSON read API."""

from __future__ import annotations

from django.urls import path

from tracer import api, views

urlpatterns = [
    path("v1/traces", views.otlp_traces, name="otlp-traces"),
    path("v1/metrics", views.otlp_metrics, name="otlp-metrics"),
    path("api/v1/traces", api.traces_list, name="api-traces"),
    path("api/v1/traces/<str:trace_id>", api.trace_resource, name="api-trace"),
    path("api/v1/traces/<str:trace_id>/spans/<str:span_id>", api.span_detail, name="api-span"),
    # Deletion on request (DELETE only). Session and user ids are the caller's own: any text.
    path("api/v1/sessions/<path:session_id>", api.session_delete, name="api-session"),
    path("api/v1/users/<path:user_id>", api.user_delete, name="api-user"),
    path("api/v1/prices", api.prices_list, name="api-prices"),
]
