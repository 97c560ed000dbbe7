"""The web UI. For now a landing page; the dashboard issue builds the real pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tracer.models import IngestBatch, Trace


@login_required
def home(request: HttpRequest) -> HttpResponse:
    # Only the projects the user is a member of.
    traces = Trace.objects.filter(project__memberships__user=request.user)
    batches = IngestBatch.objects.filter(project__memberships__user=request.user)
    context = {
        "trace_count": traces.count(),
        "pending_batches": batches.filter(
            status__in=[IngestBatch.Status.PENDING, IngestBatch.Status.PROCESSING]
        ).count(),
        "latest_traces": traces.select_related("project").order_by("-start_time_unix_nano")[:20],
    }
    return render(request, "dashboard/home.html", context)
