"""The reports' pages and CSV downloads. Each view parses the request, calls reports services
(reports/), renders.

Pages: ROI (run in the background, polled), token waste, what-if pricing, budgets. Downloads:
`/p/<slug>/export/<kind>.csv` with the pages' filters, and each ROI run's CSV. The read API's
export (`/api/v1/export/<kind>.csv`) is the reports app's own (reports/api.py).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import messages
from django.core.exceptions import BadRequest
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from dashboard import charts
from dashboard.access import can_edit, project_view
from dashboard.filters import TimeRange
from reports import budgets, common, exports, roi, runs, waste, whatif
from reports.api import csv_response
from reports.models import ReportRun
from tracer.api import BadParameter, traces_filtered
from tracer.models import Membership

# Page parameters that are not trace filters.
NOT_FILTERS = ("from", "to", "range", "sort", "page")


@project_view()
@require_GET
def export_csv(request: HttpRequest, slug: str, kind: str) -> StreamingHttpResponse:
    """A list page's CSV: the same time range and filters as the page the button is on."""
    time_range = TimeRange.from_request(request)
    filters = {k: v for k, v in request.GET.items() if k not in NOT_FILTERS}
    sort = request.GET.get("sort", "") if kind in ("agents", "models") else ""
    try:
        rows = exports.export_rows(
            kind=kind,
            project=request.project,
            traces=time_range.filter(traces_filtered(project=request.project, params=filters)),
            start_ns=time_range.start_ns,
            end_ns=time_range.end_ns,
            sort=sort,
        )
    except (BadParameter, exports.UnknownExport) as exc:
        raise BadRequest(str(exc)) from None
    return csv_response(rows, exports.export_filename(kind=kind, project=request.project, label=time_range.label))


# --- ROI ----------------------------------------------------------------------------------------


def _workflows(request: HttpRequest, time_range: TimeRange) -> list[str]:
    return common.workflow_names(project=request.project, start_ns=time_range.start_ns, end_ns=time_range.end_ns)


@project_view()
@require_GET
def roi_page(request: HttpRequest, slug: str) -> HttpResponse:
    time_range = TimeRange.from_request(request)
    values = roi.workflow_values(project=request.project)
    workflows = sorted(set(_workflows(request, time_range)) | set(values))
    recent = runs.report_runs_recent(project=request.project, kind=ReportRun.Kind.ROI)
    context = {
        "page": "reports",
        "report": "roi",
        "time_range": time_range,
        "workflows": [(name, values.get(name)) for name in workflows],
        "recent": recent,
        "can_value": request.membership.role in (Membership.Role.OWNER, Membership.Role.MEMBER),
    }
    return render(request, "dashboard/reports/roi.html", context)


@project_view()
@require_POST
def roi_start(request: HttpRequest, slug: str) -> HttpResponse:
    time_range = TimeRange.from_request(request)
    run = runs.roi_report_start(
        project=request.project,
        start_ns=time_range.start_ns,
        end_ns=time_range.end_ns,
        label=time_range.label,
        user=request.user,
    )
    return redirect("dashboard:roi-run", slug=slug, run_id=run.pk)


def _run(request: HttpRequest, run_id: int) -> ReportRun:
    run = runs.report_run_get(project=request.project, run_id=run_id, kind=ReportRun.Kind.ROI)
    if run is None:
        raise Http404("no such report")
    return run


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def roi_figures(result: dict[str, Any]) -> dict[str, dict]:
    rows = result["workflows"]
    names = [r["workflow"] for r in rows]
    weeks = sorted({w["week"] for w in result["weeks"]})
    by_workflow: dict[str, dict[str, dict]] = {}
    for w in result["weeks"]:
        by_workflow.setdefault(w["workflow"], {})[w["week"]] = w
    cost_per_success = {
        name: [_float(points.get(week, {}).get("cost_per_successful_run_usd")) for week in weeks]
        for name, points in by_workflow.items()
    }
    success_rate = {
        name: [_float(points.get(week, {}).get("success_rate")) for week in weeks]
        for name, points in by_workflow.items()
    }
    bars = charts.bars(
        names,
        {"cost": [_float(r["cost_usd"]) or 0 for r in rows], "value": [_float(r["value_usd"]) or 0 for r in rows]},
        title="Cost and value by workflow",
        unit="USD",
        barmode="group",
    )
    return {
        "value": bars if rows else {"data": [], "layout": {}},
        "cost_per_success": charts.lines(weeks, cost_per_success, title="Cost per successful run, by week", unit="USD"),
        "success_rate": charts.lines(weeks, success_rate, title="Success rate, by week", unit="share of runs"),
    }


@project_view()
@require_GET
def roi_run(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    run = _run(request, run_id)
    context: dict[str, Any] = {"page": "reports", "report": "roi", "run": run}
    if run.status == ReportRun.Status.DONE:
        context["result"] = run.result
        context["figures"] = roi_figures(run.result)
    response = render(request, "dashboard/reports/roi_run.html", context)
    if run.status in (ReportRun.Status.PENDING, ReportRun.Status.RUNNING):
        # The page reloads itself until the report is done (no script needed).
        response["Refresh"] = "1"
    return response


@project_view()
@require_GET
def roi_run_csv(request: HttpRequest, slug: str, run_id: int) -> StreamingHttpResponse:
    run = _run(request, run_id)
    if run.status != ReportRun.Status.DONE:
        raise Http404("this report is not finished")
    label = run.params.get("label", "") if isinstance(run.params, dict) else ""
    filename = exports.export_filename(kind=f"roi-{run.pk}", project=request.project, label=label)
    return csv_response(roi.roi_csv_rows(result=run.result), filename)


@project_view(min_role=Membership.Role.MEMBER)
@require_POST
def roi_value(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = request.POST.get("workflow", "").strip()
    raw = request.POST.get("value_usd", "").strip()
    back = reverse("dashboard:roi", args=[slug]) + "?" + request.GET.urlencode()
    try:
        if raw == "":
            roi.workflow_value_delete(project=request.project, workflow=workflow)
            messages.success(request, f"Value of {workflow} removed.")
            return redirect(back)
        roi.workflow_value_set(project=request.project, workflow=workflow, value_usd=Decimal(raw), user=request.user)
    except (InvalidOperation, ValueError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{raw!r} is not an amount of dollars"
        raise BadRequest(reason) from None
    messages.success(request, f"Value per successful run of {workflow} saved.")
    return redirect(back)


# --- Token waste ------------------------------------------------------------------------------


def _scoped_traces(request: HttpRequest, time_range: TimeRange):
    """The period's traces, narrowed to one workflow (?workflow=) or one trace (?trace=), and the
    scope's label."""
    trace_id = request.GET.get("trace", "").strip().lower()
    workflow = request.GET.get("workflow", "").strip()
    traces = common.traces_scoped(
        project=request.project,
        start_ns=time_range.start_ns,
        end_ns=time_range.end_ns,
        workflow=workflow,
        trace_id=trace_id,
    )
    return traces, ("trace " + trace_id if trace_id else workflow or "all workflows")


@project_view()
@require_GET
def waste_page(request: HttpRequest, slug: str) -> HttpResponse:
    time_range = TimeRange.from_request(request)
    traces, scope = _scoped_traces(request, time_range)
    result = waste.waste_compute(project=request.project, traces=traces)
    growth = result["growth"]
    turns = sorted({point["turn"] for points in growth.values() for point in points})
    series = {
        agent or "(no agent)": [next((p["avg_input_tokens"] for p in points if p["turn"] == t), None) for t in turns]
        for agent, points in growth.items()
    }
    agents = sorted(result["by_agent"].items(), key=lambda kv: -kv[1]["input_tokens"])[:20]
    figures = {
        "growth": charts.lines(turns, series, title="Context growth: input tokens per turn, by agent", unit="tokens"),
        "resent": charts.bars(
            [a or "(no agent)" for a, _ in agents],
            {
                "unique input": [f["unique_input_tokens"] for _, f in agents],
                "re-sent input": [f["resent_tokens"] for _, f in agents],
            },
            title="Unique and re-sent input tokens by agent",
            unit="tokens",
        ),
    }
    context = {
        "page": "reports",
        "report": "waste",
        "time_range": time_range,
        "scope": scope,
        "result": result,
        "figures": figures,
        "workflows": _workflows(request, time_range),
    }
    return render(request, "dashboard/reports/waste.html", context)


# --- What-if ----------------------------------------------------------------------------------

SCENARIO_FIELDS = (
    "target_model",
    "from_model",
    "input_price",
    "cached_input_price",
    "output_price",
    "gpu_hourly_usd",
    "tokens_per_second",
)


@project_view()
@require_GET
def whatif_page(request: HttpRequest, slug: str) -> HttpResponse:
    time_range = TimeRange.from_request(request)
    traces, scope = _scoped_traces(request, time_range)
    asked = any(request.GET.get(name) for name in SCENARIO_FIELDS)
    result = None
    if asked:
        try:
            scenario = whatif.scenario_parse(params=request.GET)
        except whatif.BadScenario as exc:
            raise BadRequest(str(exc)) from None
        result = whatif.whatif_compute(project=request.project, traces=traces, scenario=scenario)
    models = whatif.models_seen(project=request.project, start_ns=time_range.start_ns, end_ns=time_range.end_ns)
    context = {
        "page": "reports",
        "report": "whatif",
        "time_range": time_range,
        "scope": scope,
        "result": result,
        "models": models,
        "workflows": _workflows(request, time_range),
        "params": {name: request.GET.get(name, "") for name in (*SCENARIO_FIELDS, "trace", "workflow")},
    }
    return render(request, "dashboard/reports/whatif.html", context)


# --- Budgets ----------------------------------------------------------------------------------


def _budgets_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "page": "reports",
        "report": "budgets",
        "rows": budgets.budgets_status(project=request.project),
        "alerts": budgets.alerts_recent(project=request.project),
        "can_edit": can_edit(request),
        **extra,
    }


def _webhook_secret_page(request: HttpRequest, *, period: str, secret: str) -> HttpResponse:
    """The budgets page with a webhook secret just issued: this response is the only place it is
    shown (not stored in the session or a message, not cached)."""
    context = _budgets_context(request, new_secret=secret, new_secret_period=period)
    response = render(request, "dashboard/reports/budgets.html", context)
    add_never_cache_headers(response)
    return response


@project_view()
@require_GET
def budgets_page(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "dashboard/reports/budgets.html", _budgets_context(request))


@project_view(min_role=Membership.Role.OWNER)
@require_POST
def budget_save(request: HttpRequest, slug: str) -> HttpResponse:
    period = request.POST.get("period", "")
    try:
        budget = budgets.budget_set(
            project=request.project,
            period=period,
            amount_usd=request.POST.get("amount_usd", ""),
            email_to=request.POST.get("email_to", ""),
            webhook_url=request.POST.get("webhook_url", ""),
            actor=request.user,
        )
    except budgets.BadBudget as exc:
        context = _budgets_context(request, error=str(exc), form=request.POST)
        return render(request, "dashboard/reports/budgets.html", context, status=400)
    if budget.new_webhook_secret:
        return _webhook_secret_page(request, period=period, secret=budget.new_webhook_secret)
    messages.success(request, "Budget saved.")
    return redirect("dashboard:budgets", slug=slug)


@project_view(min_role=Membership.Role.OWNER)
@require_POST
def budget_webhook_rotate(request: HttpRequest, slug: str) -> HttpResponse:
    period = request.POST.get("period", "")
    try:
        secret = budgets.budget_webhook_secret_rotate(project=request.project, period=period, actor=request.user)
    except budgets.BadBudget as exc:
        return render(request, "dashboard/reports/budgets.html", _budgets_context(request, error=str(exc)), status=400)
    return _webhook_secret_page(request, period=period, secret=secret)


@project_view(min_role=Membership.Role.OWNER)
@require_POST
def budget_delete(request: HttpRequest, slug: str) -> HttpResponse:
    budgets.budget_delete(project=request.project, period=request.POST.get("period", ""), actor=request.user)
    messages.success(request, "Budget removed.")
    return redirect("dashboard:budgets", slug=slug)
