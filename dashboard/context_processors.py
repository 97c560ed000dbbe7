"""The budget banner on every project page: the highest threshold each budget reached this period."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from reports.budgets import budget_banner as banner_entries


def budget_banner(request: HttpRequest) -> dict:
    """Lazy: the one query runs only when a page renders the banner (project pages do)."""
    project = getattr(request, "project", None)
    if project is None:
        return {}
    return {"budget_banner": SimpleLazyObject(lambda: banner_entries(project=project))}
