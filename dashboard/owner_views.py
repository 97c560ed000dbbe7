"""Owners' pages: the audit log (page and CSV) and deletion on request (the settings page's form,
the trace page's button). Each view parses the request, calls one tracer service, renders."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import project_view
from reports.api import csv_response
from tracer.audit import Action, audit_csv_rows, audit_events
from tracer.deletion import DeletionBusy, DeletionInvalid, DeletionResult, data_delete
from tracer.models import Membership

AUDIT_PAGE_SIZE = 50
# The settings form's choice -> data_delete's keyword.
DELETE_KINDS = {"trace": "trace_id", "session": "session_id", "user": "user_id"}


@project_view(Membership.Role.OWNER)
@require_GET
def audit_page(request: HttpRequest, slug: str) -> HttpResponse:
    action = _action(request)
    events = audit_events(project=request.project, action=action)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": "settings", "events": page, "action": action, "actions": Action.choices}
    return render(request, "dashboard/audit.html", context)


@project_view(Membership.Role.OWNER)
@require_GET
def audit_csv(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    rows = audit_csv_rows(project=request.project, action=_action(request))
    return csv_response(rows, f"{request.project.slug}-audit.csv")


def _action(request: HttpRequest) -> str:
    """The action filter; an unknown one is no filter rather than an error (a stale link)."""
    action = request.GET.get("action", "")
    return action if action in Action.values else ""


@project_view(Membership.Role.OWNER)
@require_POST
def data_delete_form(request: HttpRequest, slug: str) -> HttpResponse:
    """The settings page's "Delete data" form: one trace, session or user id, confirmed."""
    keyword = DELETE_KINDS.get(request.POST.get("kind", ""))
    value = request.POST.get("value", "")
    if keyword is None:
        messages.error(request, "Choose a trace id, a session id or a user id.")
    elif request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the confirmation: deleted data cannot be brought back.")
    else:
        _delete(request, **{keyword: value})
    return redirect("dashboard:settings", slug=slug)


@project_view(Membership.Role.OWNER)
@require_POST
def trace_delete(request: HttpRequest, slug: str, trace_id: str) -> HttpResponse:
    """The trace page's delete button."""
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the confirmation: a deleted trace cannot be brought back.")
        return redirect("dashboard:trace", slug=slug, trace_id=trace_id)
    if _delete(request, trace_id=trace_id) is None:
        return redirect("dashboard:trace", slug=slug, trace_id=trace_id)
    return redirect("dashboard:traces", slug=slug)


def _delete(request: HttpRequest, **chosen: str) -> DeletionResult | None:
    """Run the deletion and say how it went (a message); None when it was refused."""
    try:
        result = data_delete(project=request.project, actor=request.user, via="dashboard", **chosen)
    except DeletionInvalid as exc:
        messages.error(request, str(exc))
        return None
    except DeletionBusy as exc:
        messages.error(request, f"Not deleted: {exc}.")
        return None
    [(kind, value)] = chosen.items()
    messages.success(
        request,
        f"Deleted for {kind.removesuffix('_id')} {value.strip()}: {result.traces} trace(s), {result.spans} span(s); "
        f"{result.batches_rewritten} raw batch(es) rewritten, {result.batches_deleted} deleted.",
    )
    if result.batches_unreadable:
        messages.warning(
            request, f"{result.batches_unreadable} stored batch(es) could not be decoded, so could not be searched."
        )
    return result
