"""The reports' API routes (the pages are the dashboard's: dashboard/urls.py)."""

from __future__ import annotations

from django.urls import path

from reports import api

urlpatterns = [
    path("api/v1/export/<str:kind>.csv", api.api_export, name="api-export"),
]
