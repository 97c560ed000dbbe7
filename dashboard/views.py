"""The dashboard's pages. Each view parses the request, calls one selector or service, renders."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import plotly
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.db import IntegrityError, transaction
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from dashboard import selectors
from dashboard.access import can_edit, project_view
from dashboard.filters import TimeRange
from dashboard.gpu_views import trace_gpu_context
from reports import usage
from tracer.api import BadParameter
from tracer.celery import task_enqueue
from tracer.models import ApiKey, Membership, ModelPrice
from tracer.pricing import REPRICE_TASK, prices_effective
from tracer.projects import apikey_create, apikey_revoke

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


@require_GET
@cache_control(public=True, max_age=86_400)
def plotly_js(request: HttpRequest) -> FileResponse:
    """plotly.js from the installed plotly package: served by us, never from a CDN."""
    return FileResponse(PLOTLY_JS.open("rb"), content_type="text/javascript")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The project the switcher names (`?project=<slug>`), else the user's first project."""
    memberships = Membership.objects.filter(user=request.user).select_related("project")
    if request.GET.get("project"):
        memberships = memberships.filter(project__slug=request.GET["project"])
    membership = memberships.order_by("project__name").first()
    if membership is None and request.GET.get("project"):
        raise Http404("no such project")
    if membership is None:
        return render(request, "dashboard/no_projects.html")
    return redirect("dashboard:overview", slug=membership.project.slug)


def _time_range(request: HttpRequest) -> TimeRange:
    return TimeRange.from_request(request)


@project_view()
def overview(request: HttpRequest, slug: str) -> HttpResponse:
    time_range = _time_range(request)
    data = selectors.overview(project=request.project, time_range=time_range)
    return render(request, "dashboard/overview.html", {**data, "time_range": time_range, "page": "overview"})


@project_view()
def traces(request: HttpRequest, slug: str) -> HttpResponse:
    time_range = _time_range(request)
    try:
        listing = selectors.traces_page(project=request.project, time_range=time_range, params=request.GET)
    except BadParameter as exc:
        raise BadRequest(str(exc)) from None
    context = {"listing": listing, "time_range": time_range, "page": "traces", "params": request.GET}
    return render(request, "dashboard/traces.html", context)


def _trace_view(request: HttpRequest, trace_id: str) -> selectors.TraceView:
    view = selectors.trace_view(project=request.project, trace_id=trace_id)
    if view is None:
        raise Http404("no such trace")
    return view


def _readable(attributes: dict) -> list[tuple[str, str]]:
    """Attributes sorted by key, values as text (lists and numbers as JSON, as they were sent)."""
    return [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in sorted(attributes.items())]


def _span_panel(request: HttpRequest, trace_id: str, span_id: str) -> dict:
    span = selectors.span_detail(project=request.project, trace_id=trace_id, span_id=span_id)
    if span is None:
        raise Http404("no such span")
    return {
        "span": span,
        "content": selectors.span_content(span),
        "attributes": _readable(span.attributes),
        "resource_attributes": _readable(span.resource_attributes),
    }


@project_view()
def trace_detail(request: HttpRequest, slug: str, trace_id: str) -> HttpResponse:
    view = _trace_view(request, trace_id)
    rows = view.rows(view.forest.roots, open_depth=selectors.OPEN_DEPTH)
    context = {"view": view, "trace": view.trace, "rows": rows, "page": "traces"}
    context.update(trace_gpu_context(project=request.project, trace=view.trace))
    selected = request.GET.get("span", "")
    if selected:
        context.update(_span_panel(request, trace_id, selected))
    return render(request, "dashboard/trace.html", context)


@project_view()
def trace_children(request: HttpRequest, slug: str, trace_id: str) -> HttpResponse:
    """Rows for the children of one span (or the roots), a page at a time: expand on demand."""
    view = _trace_view(request, trace_id)
    parent = request.GET.get("parent", "")
    try:
        offset = int(request.GET.get("offset", "0"))
        nodes = view.children_of(parent)
    except ValueError:
        raise BadRequest("offset must be an integer") from None
    except KeyError:
        raise Http404("no such span") from None
    rows = view.rows(nodes, parent_id=parent, offset=max(offset, 0), open_depth=1)
    return render(request, "dashboard/_tree_rows.html", {"rows": rows, "trace": view.trace, "view": view})


@project_view()
def span_panel(request: HttpRequest, slug: str, trace_id: str, span_id: str) -> HttpResponse:
    context = {**_span_panel(request, trace_id, span_id), "trace_id": trace_id}
    return render(request, "dashboard/_span_panel.html", context)


def _table_page(request: HttpRequest, selector, template: str, page: str) -> HttpResponse:
    """A sortable per-agent or per-model table over the time range."""
    time_range = _time_range(request)
    sort = request.GET.get("sort", "-cost")
    try:
        rows = selector(project=request.project, start_ns=time_range.start_ns, end_ns=time_range.end_ns, sort=sort)
    except BadParameter as exc:
        raise BadRequest(str(exc)) from None
    return render(request, template, {"rows": rows, "sort": sort, "time_range": time_range, "page": page})


@project_view()
def agents(request: HttpRequest, slug: str) -> HttpResponse:
    return _table_page(request, usage.agents_table, "dashboard/agents.html", "agents")


@project_view()
def models(request: HttpRequest, slug: str) -> HttpResponse:
    return _table_page(request, usage.models_table, "dashboard/models.html", "models")


# --- Prices ------------------------------------------------------------------------------------

PRICE_FIELDS = ("input", "cached_input", "cache_write", "output", "reasoning")


def _price_form(data) -> tuple[dict, list[str]]:
    """Clean a price override form; returns (values, errors)."""
    errors: list[str] = []
    values: dict = {
        "provider": data.get("provider", "").strip().lower(),
        "model_pattern": data.get("model_pattern", "").strip().lower(),
        "note": data.get("note", "").strip(),
    }
    if not values["model_pattern"]:
        errors.append("Model pattern is required.")
    elif len(values["model_pattern"]) > 200:
        errors.append("Model pattern is longer than 200 characters.")
    for name in PRICE_FIELDS:
        raw = data.get(name, "").strip()
        if not raw:
            if name in ("input", "output"):
                errors.append(f"The {name} price is required.")
            values[name] = None
            continue
        try:
            price = Decimal(raw)
            if not price.is_finite() or price < 0 or price >= Decimal("1000000"):
                raise InvalidOperation
            values[name] = price.quantize(Decimal("0.000001"))
        except InvalidOperation:
            errors.append(f"The {name.replace('_', ' ')} price {raw!r} is not a non-negative number below 1,000,000.")
    try:
        values["valid_from"] = date.fromisoformat(data.get("valid_from", "").strip() or "2000-01-01")
    except ValueError:
        errors.append("Valid from must be a date (YYYY-MM-DD).")
    return values, errors


@project_view()
def prices(request: HttpRequest, slug: str) -> HttpResponse:
    prefill = {"model_pattern": request.GET.get("model", ""), "provider": request.GET.get("provider", "")}
    return render(request, "dashboard/prices.html", {**_prices_context(request), "prefill": prefill})


@require_POST
@project_view(Membership.Role.OWNER)
def price_add(request: HttpRequest, slug: str) -> HttpResponse:
    values, errors = _price_form(request.POST)
    if not errors:
        try:
            with transaction.atomic():
                ModelPrice.objects.create(project=request.project, source="project override", **values)
        except IntegrityError:
            errors.append("An override for this provider, model pattern and date exists: delete it first.")
    if errors:
        for error in errors:
            messages.error(request, error)
        return render(
            request, "dashboard/prices.html", {**_prices_context(request), "prefill": request.POST}, status=400
        )
    # Costs already stored follow the new price: re-priced by the worker.
    task_enqueue(REPRICE_TASK, request.project.pk)
    messages.success(request, f"Price for {values['model_pattern']} saved; stored calls are being re-priced.")
    return redirect("dashboard:prices", slug=slug)


def _prices_context(request: HttpRequest) -> dict:
    project = request.project
    return {
        "prices": prices_effective(project=project),
        "overrides": ModelPrice.objects.filter(project=project).order_by("model_pattern", "provider", "valid_from"),
        "unpriced": selectors.unpriced_models(project=project),
        "can_edit": can_edit(request),
        "page": "prices",
    }


@require_POST
@project_view(Membership.Role.OWNER)
def price_delete(request: HttpRequest, slug: str, price_id: int) -> HttpResponse:
    deleted, _ = ModelPrice.objects.filter(project=request.project, pk=price_id).delete()
    if not deleted:
        raise Http404("no such price override")
    task_enqueue(REPRICE_TASK, request.project.pk)
    messages.success(request, "Override deleted; stored calls are being re-priced.")
    return redirect("dashboard:prices", slug=slug)


# --- Members and API keys (owners) -------------------------------------------------------------


@project_view(Membership.Role.OWNER)
def settings_page(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "dashboard/settings.html", _settings_context(request))


def _settings_context(request: HttpRequest, **extra) -> dict:
    project = request.project
    return {
        "members": Membership.objects.filter(project=project).select_related("user").order_by("user__username"),
        "keys": ApiKey.objects.filter(project=project).order_by("-created_at"),
        "roles": Membership.Role.choices,
        "page": "settings",
        "otlp_url": request.build_absolute_uri(reverse("otlp-traces")),
        **extra,
    }


@require_POST
@project_view(Membership.Role.OWNER)
def member_save(request: HttpRequest, slug: str) -> HttpResponse:
    username = request.POST.get("username", "").strip()
    role = request.POST.get("role", "")
    if role not in Membership.Role.values:
        raise BadRequest(f"role must be one of {', '.join(Membership.Role.values)}")
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        messages.error(request, f"No user named {username!r}.")
        return redirect("dashboard:settings", slug=slug)
    if user == request.user and role != Membership.Role.OWNER:
        messages.error(request, "You cannot lower your own role; another owner can.")
        return redirect("dashboard:settings", slug=slug)
    Membership.objects.update_or_create(project=request.project, user=user, defaults={"role": role})
    messages.success(request, f"{username} is now {role} of {request.project.name}.")
    return redirect("dashboard:settings", slug=slug)


@require_POST
@project_view(Membership.Role.OWNER)
def member_remove(request: HttpRequest, slug: str, member_id: int) -> HttpResponse:
    membership = Membership.objects.filter(project=request.project, pk=member_id).select_related("user").first()
    if membership is None:
        raise Http404("no such member")
    if membership.user == request.user:
        messages.error(request, "You cannot remove yourself.")
    else:
        membership.delete()
        messages.success(request, f"{membership.user.username} removed.")
    return redirect("dashboard:settings", slug=slug)


@require_POST
@project_view(Membership.Role.OWNER)
def key_create(request: HttpRequest, slug: str) -> HttpResponse:
    name = request.POST.get("name", "").strip() or "default"
    key, secret = apikey_create(project=request.project, name=name[:100])
    # The secret is in this response only: it is not stored and cannot be shown again.
    return render(request, "dashboard/settings.html", _settings_context(request, new_key=key, new_secret=secret))


@require_POST
@project_view(Membership.Role.OWNER)
def key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    key = ApiKey.objects.filter(project=request.project, pk=key_id).first()
    if key is None:
        raise Http404("no such key")
    apikey_revoke(key=key)
    messages.success(request, f"Key {key.prefix}… revoked at {timezone.now():%Y-%m-%d %H:%M} UTC.")
    return redirect("dashboard:settings", slug=slug)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400 with the reason (a bad filter, sort or date), so the user can fix the link."""
    reason = str(exception) or "The request could not be understood."
    return render(request, "dashboard/400.html", {"reason": reason}, status=400)
