"""The dashboard's pages. Each view parses the request, calls one selector or service, renders."""

from __future__ import annotations

import json
from pathlib import Path

import plotly
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, PermissionDenied
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
from tracer.models import ApiKey, Membership, ModelPrice
from tracer.pricing import PriceInvalid, price_override_create, price_override_delete, prices_effective
from tracer.projects import (
    MembershipForbidden,
    MembershipRefused,
    RoleInvalid,
    apikey_create,
    apikey_revoke,
    apikey_split,
    membership_remove,
    membership_save,
)

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


@project_view()
def prices(request: HttpRequest, slug: str) -> HttpResponse:
    prefill = {"model_pattern": request.GET.get("model", ""), "provider": request.GET.get("provider", "")}
    return render(request, "dashboard/prices.html", {**_prices_context(request), "prefill": prefill})


@require_POST
@project_view(Membership.Role.OWNER)
def price_add(request: HttpRequest, slug: str) -> HttpResponse:
    form = request.POST
    try:
        override = price_override_create(
            project=request.project,
            model_pattern=form.get("model_pattern", ""),
            provider=form.get("provider", ""),
            input=form.get("input", ""),
            cached_input=form.get("cached_input", ""),
            cache_write=form.get("cache_write", ""),
            output=form.get("output", ""),
            reasoning=form.get("reasoning", ""),
            valid_from=form.get("valid_from", ""),
            note=form.get("note", ""),
            actor=request.user,
        )
    except PriceInvalid as exc:
        for error in exc.messages:
            messages.error(request, error)
        return render(request, "dashboard/prices.html", {**_prices_context(request), "prefill": form}, status=400)
    messages.success(request, f"Price for {override.model_pattern} saved; stored calls are being re-priced.")
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
    try:
        price_override_delete(project=request.project, price_id=price_id, actor=request.user)
    except ModelPrice.DoesNotExist:
        raise Http404("no such price override") from None
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
        "scopes": ApiKey.Scope.choices,
        "page": "settings",
        "otlp_url": request.build_absolute_uri(reverse("otlp-traces")),
        "api_url": request.build_absolute_uri(reverse("api-traces")),
        **extra,
    }


@require_POST
@project_view(Membership.Role.OWNER)
def member_save(request: HttpRequest, slug: str) -> HttpResponse:
    username = request.POST.get("username", "").strip()
    role = request.POST.get("role", "")
    try:
        membership_save(project=request.project, actor=request.user, username=username, role=role)
    except RoleInvalid as exc:
        raise BadRequest(str(exc)) from None
    except MembershipForbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except MembershipRefused as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:settings", slug=slug)
    messages.success(request, f"{username} is now {role} of {request.project.name}.")
    return redirect("dashboard:settings", slug=slug)


@require_POST
@project_view(Membership.Role.OWNER)
def member_remove(request: HttpRequest, slug: str, member_id: int) -> HttpResponse:
    try:
        membership = membership_remove(project=request.project, actor=request.user, member_id=member_id)
    except Membership.DoesNotExist:
        raise Http404("no such member") from None
    except MembershipForbidden as exc:
        raise PermissionDenied(str(exc)) from None
    except MembershipRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.username} removed.")
    return redirect("dashboard:settings", slug=slug)


@require_POST
@project_view(Membership.Role.OWNER)
def key_create(request: HttpRequest, slug: str) -> HttpResponse:
    name = request.POST.get("name", "").strip() or "default"
    scope = request.POST.get("scope", ApiKey.Scope.INGEST)
    if scope not in ApiKey.Scope.values:
        raise BadRequest(f"scope must be one of {', '.join(ApiKey.Scope.values)}")
    key, secret = apikey_create(project=request.project, name=name[:100], scopes=(scope,), actor=request.user)
    # The secret is in this response only: it is not stored and cannot be shown again.
    return render(request, "dashboard/settings.html", _settings_context(request, new_keys=[(key, secret)]))


@require_POST
@project_view(Membership.Role.OWNER)
def key_split(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    """Replace a legacy key (ingest + read) by an ingest key and a read key; both secrets shown once."""
    key = ApiKey.objects.filter(project=request.project, pk=key_id).first()
    if key is None:
        raise Http404("no such key")
    try:
        split = apikey_split(key=key, actor=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("dashboard:settings", slug=slug)
    new_keys = [(split.ingest, split.ingest_secret), (split.read, split.read_secret)]
    messages.success(request, f"Key {key.prefix}… revoked and split in two: give each secret to its user now.")
    return render(request, "dashboard/settings.html", _settings_context(request, new_keys=new_keys))


@require_POST
@project_view(Membership.Role.OWNER)
def key_revoke(request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
    key = ApiKey.objects.filter(project=request.project, pk=key_id).first()
    if key is None:
        raise Http404("no such key")
    apikey_revoke(key=key, actor=request.user)
    messages.success(request, f"Key {key.prefix}… revoked at {timezone.now():%Y-%m-%d %H:%M} UTC.")
    return redirect("dashboard:settings", slug=slug)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400 with the reason (a bad filter, sort or date), so the user can fix the link."""
    reason = str(exception) or "The request could not be understood."
    return render(request, "dashboard/400.html", {"reason": reason}, status=400)
