"""The read API (JSON): traces, one trace with its call tree, effective prices; and deletion on
request of a trace, a session or a user's data (owners). See docs/api.md.

Authenticated by an API key of the project with the read scope (`Authorization: Bearer`, or
`x-octotrace-key`), or by a logged-in member of the project named with `?project=<slug>`, within
the read rate limits. A project the caller cannot see is a 404, like an unknown id, so ids of
other tenants cannot be probed.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.http import Http404, HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from tracer import messages, ratelimit, tree
from tracer.deletion import DeletionBusy, DeletionInvalid, data_delete
from tracer.gpu.attribution import gpu_by_agent
from tracer.models import ApiKey, Membership, Project, Span, Trace
from tracer.pricing import prices_effective
from tracer.projects import apikey_authenticate, membership_for
from tracer.views import request_secret

PAGE_SIZE = 50
HEX_ID = re.compile(r"[0-9a-fA-F]+")
MAX_PAGE_SIZE = 500
SPAN_FIELDS = (
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "span_kind",
    "agent_name",
    "model",
    "provider",
    "session_id",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "status_message",
    "service_name",
    *tree.TOKEN_FIELDS,
    "billed",
    "cost",
    "reported_cost",
    # This call's share of its self-hosted endpoint's GPUs (tracer/gpu/attribution.py); null if none.
    "gpu_seconds",
    "gpu_energy_wh",
    "gpu_cost",
)


class BadParameter(ValueError):
    pass


# How a boolean filter (`?incomplete=`) may be written.
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _json(data: Any, status: int = 200) -> JsonResponse:
    # Money leaves as a decimal string: a float would round it.
    return JsonResponse(data, status=status, json_dumps_params={"default": _default}, safe=False)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _error(status: int, message: str) -> JsonResponse:
    return _json({"error": message}, status=status)


def request_project(request: HttpRequest) -> Project | JsonResponse:
    """The project a read API request may read, or the error response to send.

    The one gate of every read endpoint (this module's and the CSV export API): an active key with
    the read scope (else 401 / 403), or a logged-in member naming the project (else 401 / 404), within
    the read rate limits (else 429 with Retry-After).
    """
    secret = request_secret(request)
    slug = request.GET.get("project", "")
    if secret:
        key = apikey_authenticate(secret=secret)
        if key is None:
            return _error(401, "missing, unknown or revoked API key")
        if not key.has_scope(ApiKey.Scope.READ):
            return _error(403, "this API key has the ingest scope only: read the API with a read key")
        if slug and slug != key.project.slug:
            raise Http404("no such project")
        return _admitted(key.project, ratelimit.read_admit(project=key.project, key=key))
    if not request.user.is_authenticated:
        return _error(401, "authenticate with an API key or log in")
    if not slug:
        return _error(400, "name the project with ?project=<slug>")
    membership = membership_for(user=request.user, slug=slug)
    if membership is None:
        raise Http404("no such project")
    return _admitted(membership.project, ratelimit.read_admit(project=membership.project, user_id=request.user.pk))


def _admitted(project: Project, refusal: ratelimit.Refusal | None) -> Project | JsonResponse:
    if refusal is None:
        return project
    response = _error(429, refusal.reason)
    response["Retry-After"] = str(refusal.retry_after)
    return response


def datetime_ns(name: str, value: str) -> int:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(f"{name}={value!r} is not an ISO 8601 datetime") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000


def _cursor(value: str) -> tuple[int, int]:
    try:
        start, pk = base64.urlsafe_b64decode(value.encode()).decode().split(":")
        return int(start), int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadParameter("cursor is not one this API returned") from None


def _trace_json(trace: Trace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "root_span_id": trace.root_span_id,
        "root_span_name": trace.root_span_name,
        "session_id": trace.session_id,
        "service_name": trace.service_name,
        "start_time_unix_nano": trace.start_time_unix_nano,
        "end_time_unix_nano": trace.end_time_unix_nano,
        "duration_ms": (trace.end_time_unix_nano - trace.start_time_unix_nano) / 1e6,
        "status": trace.status,
        "span_count": trace.span_count,
        "error_count": trace.error_count,
        **{name: getattr(trace, name) for name in tree.TOKEN_FIELDS},
        "cost": trace.cost,
        "unpriced_count": trace.unpriced_count,
        # Data quality (tracer/tree.py `quality`): model calls billed and those without usage, the
        # parents that never arrived, and the instrumentation scope the trace came from.
        "billed_count": trace.billed_count,
        "no_usage_count": trace.no_usage_count,
        "incomplete": trace.incomplete,
        "missing_parents": trace.missing_parents,
        "framework": trace.framework,
        "gpu_seconds": trace.gpu_seconds,
        "gpu_energy_wh": trace.gpu_energy_wh,
        "gpu_cost": trace.gpu_cost,
    }


def traces_filtered(*, project: Project, params: Any) -> Any:
    """The project's traces matching the list filters (shared by this API, the dashboard and exports).

    Raises BadParameter with a message for the user on a bad value.
    """
    traces = Trace.objects.filter(project=project)
    if params.get("from"):
        traces = traces.filter(start_time_unix_nano__gte=datetime_ns("from", params["from"]))
    if params.get("to"):
        traces = traces.filter(start_time_unix_nano__lt=datetime_ns("to", params["to"]))
    if params.get("status"):
        if params["status"] not in ("ok", "error"):
            raise BadParameter("status must be ok or error")
        traces = traces.filter(status=params["status"])
    if params.get("min_cost"):
        try:
            minimum = Decimal(params["min_cost"])
            if not minimum.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            raise BadParameter(f"min_cost={params['min_cost']!r} is not a number") from None
        traces = traces.filter(cost__gte=minimum)
    if params.get("incomplete"):
        wanted = BOOLEANS.get(params["incomplete"].lower())
        if wanted is None:
            raise BadParameter(f"incomplete={params['incomplete']!r}: use true or false")
        traces = traces.filter(incomplete=wanted)
    if params.get("framework"):
        traces = traces.filter(framework=params["framework"])
    if params.get("session"):
        traces = traces.filter(session_id=params["session"])
    if params.get("root"):
        traces = traces.filter(root_span_name=params["root"])
    spans = Span.objects.filter(project=project, trace_id=OuterRef("trace_id"))
    if params.get("q"):
        # The workflow (root span) name, or an id: a trace id (32 hex digits) or a span id (16).
        q = params["q"].strip()
        match = Q(root_span_name__icontains=q)
        if HEX_ID.fullmatch(q) and len(q) == 32:
            match |= Q(trace_id=q.lower())
        elif HEX_ID.fullmatch(q) and len(q) == 16:
            by_span = Span.objects.filter(project=project, span_id=q.lower()).values("trace_id")
            match |= Q(trace_id__in=by_span)
        traces = traces.filter(match)
    if params.get("agent"):
        traces = traces.filter(Exists(spans.filter(agent_name=params["agent"])))
    if params.get("model"):
        traces = traces.filter(Exists(spans.filter(model=params["model"])))
    return traces


@require_GET
def traces_list(request: HttpRequest) -> JsonResponse:
    project = request_project(request)
    if isinstance(project, JsonResponse):
        return project
    try:
        limit = min(int(request.GET.get("limit", PAGE_SIZE)), MAX_PAGE_SIZE)
        if limit < 1:
            raise ValueError
    except ValueError:
        return _error(400, f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
    try:
        matching = traces_filtered(project=project, params=request.GET)
        traces = matching
        if request.GET.get("cursor"):
            start, pk = _cursor(request.GET["cursor"])
            traces = traces.filter(Q(start_time_unix_nano__lt=start) | Q(start_time_unix_nano=start, pk__lt=pk))
    except BadParameter as exc:
        return _error(400, str(exc))
    # Project totals over everything the filters match (not just this page): sums of the trace
    # rollups, which are themselves sums of billed spans only.
    totals = matching.aggregate(
        trace_count=Count("pk"),
        span_count=Sum("span_count", default=0),
        error_count=Sum("error_count", default=0),
        **{name: Sum(name, default=0) for name in tree.TOKEN_FIELDS},
        cost=Sum("cost"),
        unpriced_count=Sum("unpriced_count", default=0),
        incomplete_count=Count("pk", filter=Q(incomplete=True)),
        gpu_seconds=Sum("gpu_seconds"),
        gpu_energy_wh=Sum("gpu_energy_wh"),
        gpu_cost=Sum("gpu_cost"),
    )
    page = list(traces.order_by("-start_time_unix_nano", "-pk")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    next_cursor = None
    if more:
        last = page[-1]
        next_cursor = base64.urlsafe_b64encode(f"{last.start_time_unix_nano}:{last.pk}".encode()).decode()
    return _json({"data": [_trace_json(t) for t in page], "next_cursor": next_cursor, "totals": totals})


@require_GET
def trace_detail(request: HttpRequest, trace_id: str) -> JsonResponse:
    project = request_project(request)
    if isinstance(project, JsonResponse):
        return project
    trace = Trace.objects.filter(project=project, trace_id=trace_id.lower()).first()
    if trace is None:
        raise Http404("no such trace")
    spans = list(
        Span.objects.filter(project=project, trace_id=trace.trace_id)
        .order_by("start_time_unix_nano", "span_id")
        .values(*SPAN_FIELDS)
    )
    forest = tree.build(spans)
    for node in forest.nodes.values():
        node.span["orphan"] = node.orphan
        node.span["cycle"] = node.cycle
        node.span["depth"] = node.depth
    return _json(
        {
            "trace": _trace_json(trace),
            **tree.breakdowns(forest),
            "gpu_by_agent": gpu_by_agent(spans=spans),
            "spans": spans,
            "tree": tree.nested(forest),
        }
    )


# What one span's detail returns besides SPAN_FIELDS: everything as received.
RAW_SPAN_FIELDS = (
    "trace_id",
    "scope_name",
    "scope_version",
    "resource_attributes",
    "attributes",
    "events",
    "links",
)


@require_GET
def span_detail(request: HttpRequest, trace_id: str, span_id: str) -> JsonResponse:
    """One span with its attributes, resource attributes, events and links as received (captured
    messages reassembled from the message store, tracer/messages.py)."""
    project = request_project(request)
    if isinstance(project, JsonResponse):
        return project
    span = (
        Span.objects.filter(project=project, trace_id=trace_id.lower(), span_id=span_id.lower())
        .values(*SPAN_FIELDS, *RAW_SPAN_FIELDS)
        .first()
    )
    if span is None:
        raise Http404("no such span")
    messages.spans_restore(project_id=project.pk, spans=[span])
    return _json({"span": span})


@require_GET
def prices_list(request: HttpRequest) -> JsonResponse:
    """The prices in force today for this project: its overrides, then the defaults they leave."""
    project = request_project(request)
    if isinstance(project, JsonResponse):
        return project
    data = [
        {
            "scope": "project" if price.project_id else "default",
            "provider": price.provider or None,
            "model_pattern": price.model_pattern,
            "input": price.input,
            "cached_input": price.cached_input if price.cached_input is not None else price.input,
            "cache_write": price.cache_write if price.cache_write is not None else price.input,
            "output": price.output,
            "reasoning": price.reasoning if price.reasoning is not None else price.output,
            "valid_from": price.valid_from,
            "source": price.source,
            "note": price.note,
        }
        for price in prices_effective(project=project)
    ]
    return _json({"unit": "USD per 1M tokens", "data": data})


# --- Deletion on request ----------------------------------------------------------------------

# Seconds a caller refused with 409 (a worker is processing the data) waits before asking again.
DELETE_RETRY_AFTER_SECONDS = 5


@csrf_exempt
def trace_resource(request: HttpRequest, trace_id: str) -> JsonResponse:
    """`/api/v1/traces/<trace_id>`: GET reads the trace, DELETE deletes it."""
    if request.method == "DELETE":
        return _data_delete(request, trace_id=trace_id)
    return trace_detail(request, trace_id)


@csrf_exempt
@require_http_methods(["DELETE"])
def session_delete(request: HttpRequest, session_id: str) -> JsonResponse:
    return _data_delete(request, session_id=session_id)


@csrf_exempt
@require_http_methods(["DELETE"])
def user_delete(request: HttpRequest, user_id: str) -> JsonResponse:
    return _data_delete(request, user_id=user_id)


def _data_delete(request: HttpRequest, **chosen: str) -> JsonResponse:
    """Delete on request (tracer/deletion.py): owners only, so a logged-in owner (with Django's CSRF
    check, as a form would have: these views are exempt only so that a key gets its own answer). No
    API key deletes: an ingest key sends, a read key reads, and neither belongs to an owner."""
    project = request_project(request)
    if isinstance(project, JsonResponse):
        return project
    if request_secret(request):
        return _error(403, "deleting data needs an owner's login: API keys never delete")
    if CsrfViewMiddleware(lambda _: None).process_view(request, None, (), {}) is not None:
        return _error(403, "CSRF check failed: send the csrftoken cookie's value in an X-CSRFToken header")
    role = Membership.objects.filter(project=project, user=request.user).values_list("role", flat=True).first()
    if role != Membership.Role.OWNER:
        return _error(403, f"only an owner of {project.name} deletes data")
    actor, via = request.user, "API"
    try:
        result = data_delete(project=project, actor=actor, via=via, **chosen)
    except DeletionInvalid as exc:
        return _error(400, str(exc))
    except DeletionBusy as exc:
        response = _error(409, str(exc))
        response["Retry-After"] = str(DELETE_RETRY_AFTER_SECONDS)
        return response
    return _json({"deleted": result.as_dict()})
