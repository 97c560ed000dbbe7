"""How much of its endpoint's GPUs each LLM span used: GPU-seconds, energy (Wh) and dollars.

The model (docs/gpu-attribution.md): a GPU's time is measured in sample intervals (two consecutive
readings). Cut every interval at the start and end of the requests in flight on the endpoint the
GPU serves; each piece of time, and the energy the GPU spent in it (pro rata of the interval's
energy), is split evenly among the requests in flight during that piece. Pieces with no request
in flight are the GPU's idle time, attributed to nobody. So two overlapping requests share the
overlap, eight concurrent requests each get an eighth, and over any window

    sum of what the spans got + idle = what the GPUs measured.

Dollars: each device's GPU-seconds times its price per GPU-hour, plus energy times the endpoint's
electricity price when one is set. A span none of whose time is covered by a sample gets NULL
(unknown), never zero; a device without a price makes the span's dollars NULL (unpriced).

When: every minute beat's ATTRIBUTE_TASK selects the projects whose endpoints' GPUs have samples
in the last window and fans out one ATTRIBUTE_PROJECT_TASK per project (tracer/tasks.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Sum
from django.db.models.fields.json import KT
from django.utils import timezone

from tracer.celery import task_send
from tracer.gpu.intervals import NS, Interval, Share, intervals_from_samples, split_intervals
from tracer.gpu.prices import address_from_url, endpoint_gpu_prices
from tracer.gpu.retention import MINUTE_NS
from tracer.models import Endpoint, GpuDevice, GpuSample, GpuSampleMinute, Span, Trace
from tracer.rollup import traces_lock

# The periodic sweep (beat, every minute; the demo sends it too) and the per-project pass it enqueues.
ATTRIBUTE_TASK = "gpu.attribute"
ATTRIBUTE_PROJECT_TASK = "gpu.attribute_project"

WH = 3600.0
_MONEY = Decimal("0.0000000001")


# --- Reading the database ---------------------------------------------------------------------


def device_intervals(*, device_ids: list[int], start_ns: int, end_ns: int) -> list[Interval]:
    """The intervals of these devices that overlap [start_ns, end_ns]: from raw samples, and from
    minute rollups for the part older than a device's oldest raw sample."""
    max_gap_ns = settings.OCTOTRACE_GPU_MAX_GAP_SECONDS * NS
    out: list[Interval] = []
    for device_id in device_ids:
        rows = list(
            GpuSample.objects.filter(
                device_id=device_id, time_unix_nano__gte=start_ns - max_gap_ns, time_unix_nano__lte=end_ns + max_gap_ns
            )
            .order_by("time_unix_nano")
            .values_list("time_unix_nano", "utilization_gpu", "power_mw", "energy_mj")
        )
        raw = [
            i
            for i in intervals_from_samples(device_id=device_id, samples=rows, max_gap_ns=max_gap_ns)
            if i.end_ns > start_ns and i.start_ns < end_ns
        ]
        out.extend(raw)
        oldest_raw = rows[0][0] if rows else end_ns + 1
        if start_ns < oldest_raw:
            minutes = GpuSampleMinute.objects.filter(
                device_id=device_id,
                minute_unix_nano__gte=start_ns - MINUTE_NS,
                minute_unix_nano__lt=min(end_ns, oldest_raw),
            ).values_list("minute_unix_nano", "covered_seconds", "energy_j", "utilization_gpu_avg")
            for minute, covered, energy, util in minutes:
                if minute + MINUTE_NS > oldest_raw or covered <= 0:
                    continue
                out.append(
                    Interval(
                        device_id=device_id,
                        start_ns=minute,
                        end_ns=minute + MINUTE_NS,
                        energy_j=energy,
                        utilization_gpu=util,
                        coverage=min(covered / 60.0, 1.0),
                    )
                )
    return out


@dataclass(frozen=True, slots=True)
class _Request:
    id: int
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    endpoint_id: int
    billed: bool


def _endpoint_key(address: str | None, port: str | None, *urls: str | None) -> tuple[str, int] | None:
    if address:
        try:
            return address.strip().lower(), int(port) if port not in (None, "") else 0
        except ValueError:
            return address.strip().lower(), 0
    for url in urls:
        if url:
            try:
                return address_from_url(url)
            except ValueError:
                continue
    return None


def _requests(*, project_id: int, endpoints: dict[tuple[str, int], int], start_ns: int, end_ns: int) -> list[_Request]:
    """LLM spans overlapping [start_ns, end_ns] that one of the endpoints served.

    Spans are found by their start time (`span_project_start_idx`): a call overlapping the window
    started before its end and at most OCTOTRACE_GPU_MAX_CALL_SECONDS before its start (one model
    call, however long its trace runs). When a matching span's parent matches too (a framework span
    around the client span of the same call), only one of them counts as the request.
    """
    max_call_ns = settings.OCTOTRACE_GPU_MAX_CALL_SECONDS * NS
    rows = (
        Span.objects.filter(
            project_id=project_id,
            start_time_unix_nano__gte=start_ns - max_call_ns,
            start_time_unix_nano__lt=end_ns,
            end_time_unix_nano__gt=start_ns,
            kind="llm",
        )
        .annotate(
            address=KT("attributes__server.address"),
            port=KT("attributes__server.port"),
            api_base=KT("attributes__gen_ai.openai.api_base"),
            url=KT("attributes__url.full"),
        )
        .values_list(
            "id",
            "trace_id",
            "span_id",
            "parent_span_id",
            "start_time_unix_nano",
            "end_time_unix_nano",
            "billed",
            "address",
            "port",
            "api_base",
            "url",
        )
    )
    found: list[_Request] = []
    for id_, trace_id, span_id, parent, start, end, billed, address, port, api_base, url in rows.iterator(
        chunk_size=2000
    ):
        key = _endpoint_key(address, port, api_base, url)
        if key is None:
            continue
        endpoint_id = endpoints.get(key) or endpoints.get((key[0], 0))
        if endpoint_id is not None:
            found.append(_Request(id_, trace_id, span_id, parent, start, end, endpoint_id, billed))
    # One request per model call: of a matching span and its matching parent, keep the billed one
    # (where token costs are counted, so API and GPU cost sit side by side), else the outer one.
    matched = {(r.trace_id, r.span_id): r for r in found}
    drop: set[int] = set()
    for r in found:
        parent = matched.get((r.trace_id, r.parent_span_id))
        if parent is not None:
            drop.add(parent.id if r.billed and not parent.billed else r.id)
    return [r for r in found if r.id not in drop]


@dataclass(frozen=True, slots=True)
class AttributionResult:
    spans: int
    attributed: int
    traces: int


def gpu_attribute(*, project_id: int, start_ns: int, end_ns: int) -> AttributionResult:
    """(Re)compute the GPU share of every LLM span of the project's endpoints that overlaps the
    window, and the GPU totals of their traces. Idempotent: a rerun after late samples or spans
    replaces the figures."""
    endpoints = list(Endpoint.objects.filter(project_id=project_id).prefetch_related("devices"))
    endpoints = [e for e in endpoints if e.devices.all()]
    if not endpoints:
        return AttributionResult(0, 0, 0)
    by_address = {(e.server_address.lower(), e.server_port): e.pk for e in endpoints}
    targets = _requests(project_id=project_id, endpoints=by_address, start_ns=start_ns, end_ns=end_ns)
    if not targets:
        return AttributionResult(0, 0, 0)
    # Every request that shares a GPU with a target, over the targets' whole lifetimes.
    wide_start = min(r.start_ns for r in targets)
    wide_end = max(r.end_ns for r in targets)
    in_flight = _requests(project_id=project_id, endpoints=by_address, start_ns=wide_start, end_ns=wide_end)

    shares: dict[int, Share] = {}
    prices: dict[int, dict[int, Decimal | None]] = {}
    for endpoint in endpoints:
        devices = list(endpoint.devices.all())
        prices[endpoint.pk] = endpoint_gpu_prices(endpoint=endpoint, devices=devices)
        intervals = device_intervals(device_ids=[d.pk for d in devices], start_ns=wide_start, end_ns=wide_end)
        requests = [(r.id, r.start_ns, r.end_ns) for r in in_flight if r.endpoint_id == endpoint.pk]
        shares.update(split_intervals(requests=requests, intervals=intervals))

    electricity = {e.pk: e.electricity_kwh_price for e in endpoints}
    updates: list[Span] = []
    for request in sorted(targets, key=lambda r: (r.trace_id, r.span_id)):
        share = shares.get(request.id)
        if share is None:
            updates.append(Span(id=request.id, gpu_seconds=None, gpu_energy_wh=None, gpu_cost=None))
            continue
        energy_wh = share.energy_j / WH if share.energy_known else None
        updates.append(
            Span(
                id=request.id,
                gpu_seconds=share.seconds,
                gpu_energy_wh=energy_wh,
                gpu_cost=_cost(share, prices[request.endpoint_id], electricity[request.endpoint_id], energy_wh),
            )
        )
    trace_ids = sorted({r.trace_id for r in targets})
    with transaction.atomic():
        _lock_traces(project_id=project_id, trace_ids=trace_ids)
        Span.objects.bulk_update(updates, ["gpu_seconds", "gpu_energy_wh", "gpu_cost"], batch_size=500)
        traces_gpu_rollup(project_id=project_id, trace_ids=trace_ids)
    attributed = sum(1 for u in updates if u.gpu_seconds is not None)
    return AttributionResult(spans=len(updates), attributed=attributed, traces=len(trace_ids))


def _cost(
    share: Share, prices: dict[int, Decimal | None], kwh_price: Decimal | None, energy_wh: float | None
) -> Decimal | None:
    total = Decimal(0)
    for device_id, seconds in share.seconds_by_device.items():
        price = prices.get(device_id)
        if price is None:
            return None
        total += Decimal(repr(seconds)) * price / 3600
    if kwh_price is not None:
        if energy_wh is None:
            return None
        total += Decimal(repr(energy_wh)) / 1000 * kwh_price
    return total.quantize(_MONEY)


def _lock_traces(*, project_id: int, trace_ids: list[str]) -> None:
    """The ingest worker's per-trace advisory locks (tracer/rollup.py), in the same order, so this
    and a batch touching the same trace run one after the other instead of deadlocking."""
    traces_lock(project_id=project_id, trace_ids=trace_ids)


def traces_gpu_rollup(*, project_id: int, trace_ids: list[str]) -> None:
    """Trace GPU totals = the sums over their spans (NULL when no span has any)."""
    sums = {
        row["trace_id"]: row
        for row in Span.objects.filter(project_id=project_id, trace_id__in=trace_ids)
        .values("trace_id")
        .annotate(seconds=Sum("gpu_seconds"), energy=Sum("gpu_energy_wh"), cost=Sum("gpu_cost"))
    }
    traces = list(Trace.objects.filter(project_id=project_id, trace_id__in=trace_ids).only("id", "trace_id"))
    now = timezone.now()
    for trace in traces:
        row = sums.get(trace.trace_id, {})
        trace.gpu_seconds = row.get("seconds")
        trace.gpu_energy_wh = row.get("energy")
        trace.gpu_cost = row.get("cost")
        trace.updated_at = now  # the trace's spans changed: cached call trees are stale
    Trace.objects.bulk_update(traces, ["gpu_seconds", "gpu_energy_wh", "gpu_cost", "updated_at"], batch_size=500)


def recent_window(*, now_ns: int) -> tuple[int, int]:
    """(start_ns, end_ns) of the periodic pass: the last OCTOTRACE_GPU_ATTRIBUTION_WINDOW_MINUTES."""
    return now_ns - settings.OCTOTRACE_GPU_ATTRIBUTION_WINDOW_MINUTES * 60 * NS, now_ns


def gpu_attribution_project_ids(*, start_ns: int, end_ns: int) -> list[int]:
    """Projects with an endpoint one of whose GPUs has a sample (raw, or a minute rollup) within
    [start_ns, end_ns] give or take OCTOTRACE_GPU_MAX_GAP_SECONDS: the only ones an attribution pass
    over that window can give figures to. Each EXISTS is one range read of the (device, time) key."""
    max_gap_ns = settings.OCTOTRACE_GPU_MAX_GAP_SECONDS * NS
    raw = GpuSample.objects.filter(
        device=OuterRef("pk"), time_unix_nano__gte=start_ns - max_gap_ns, time_unix_nano__lte=end_ns + max_gap_ns
    )
    minutes = GpuSampleMinute.objects.filter(
        device=OuterRef("pk"), minute_unix_nano__gte=start_ns - MINUTE_NS, minute_unix_nano__lt=end_ns
    )
    sampled = GpuDevice.objects.filter(Exists(raw) | Exists(minutes))
    endpoints = Endpoint.objects.filter(devices__in=sampled)
    return list(endpoints.values_list("project_id", flat=True).distinct().order_by("project_id"))


def gpu_attribute_recent(*, project_id: int, now_ns: int) -> AttributionResult:
    """One project's periodic pass (ATTRIBUTE_PROJECT_TASK), over the window that ends at `now_ns`."""
    start_ns, end_ns = recent_window(now_ns=now_ns)
    return gpu_attribute(project_id=project_id, start_ns=start_ns, end_ns=end_ns)


def gpu_attribute_fan_out(*, now_ns: int) -> int:
    """The periodic sweep (ATTRIBUTE_TASK): one ATTRIBUTE_PROJECT_TASK per project with GPU samples
    in the window, so a slow project neither delays nor times out the others. It attributes
    nothing itself. Returns how many tasks the broker took; a send that failed is logged, and the
    next sweep, a minute later, covers that project again."""
    start_ns, end_ns = recent_window(now_ns=now_ns)
    project_ids = gpu_attribution_project_ids(start_ns=start_ns, end_ns=end_ns)
    return sum(task_send(ATTRIBUTE_PROJECT_TASK, project_id) for project_id in project_ids)


def gpu_by_agent(*, spans: Iterable[dict]) -> list[dict]:
    """GPU seconds, Wh and dollars per agent over a trace's span dicts (agent_name, gpu_*), the
    way the token breakdowns are grouped. Dollars stay None for an agent with an unpriced span."""
    rows: dict[str, dict] = {}
    for span in spans:
        if span.get("gpu_seconds") is None:
            continue
        row = rows.setdefault(
            span.get("agent_name") or "",
            {"agent": span.get("agent_name") or "", "gpu_seconds": 0.0, "gpu_energy_wh": 0.0, "gpu_cost": Decimal(0)},
        )
        row["gpu_seconds"] += span["gpu_seconds"]
        row["gpu_energy_wh"] = (
            None
            if row["gpu_energy_wh"] is None or span.get("gpu_energy_wh") is None
            else (row["gpu_energy_wh"] + span["gpu_energy_wh"])
        )
        row["gpu_cost"] = (
            None if row["gpu_cost"] is None or span.get("gpu_cost") is None else (row["gpu_cost"] + span["gpu_cost"])
        )
    return sorted(rows.values(), key=lambda r: -r["gpu_seconds"])
