"""Reads for the GPUs page and a trace's GPU panel: series per device in time buckets (raw samples,
then minute rollups where the raw ones are gone), totals measured vs attributed, active traces."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Avg, BigIntegerField, Count, ExpressionWrapper, F, Max, Min, Q, Sum

from tracer.gpu.intervals import NS
from tracer.gpu.prices import endpoint_gpu_prices, gpu_default_price
from tracer.models import Endpoint, GpuDevice, GpuSample, GpuSampleMinute, Project, Span, Trace

# Points per device and chart: enough to see load, few enough to ship to the browser.
MAX_POINTS = 400


@dataclass(slots=True)
class Point:
    time_ns: int
    utilization_gpu: float | None
    memory_used_bytes: int | None
    power_w: float | None


@dataclass(slots=True)
class DeviceSummary:
    device: GpuDevice
    price_per_hour: Decimal | None
    sampled_seconds: float = 0.0
    energy_j: float | None = None
    utilization_avg: float | None = None
    power_max_w: float | None = None
    series: list[Point] = field(default_factory=list)

    @property
    def energy_wh(self) -> float | None:
        return None if self.energy_j is None else self.energy_j / 3600

    @property
    def cost(self) -> Decimal | None:
        if self.price_per_hour is None:
            return None
        return (Decimal(repr(self.sampled_seconds)) * self.price_per_hour / 3600).quantize(Decimal("0.000001"))


def bucket_ns_for(*, start_ns: int, end_ns: int) -> int:
    """A bucket size (whole seconds, at least 1 s; whole minutes past 6 h) giving <= MAX_POINTS points."""
    span = max(end_ns - start_ns, NS)
    bucket = max(NS, -(-span // MAX_POINTS))
    if bucket > 60 * NS:
        bucket = -(-bucket // (60 * NS)) * 60 * NS
    return bucket - bucket % NS


def device_series(*, device_ids: list[int], start_ns: int, end_ns: int) -> dict[int, list[Point]]:
    """Averages per time bucket for each device: one grouped query on raw samples, one on rollups."""
    bucket = bucket_ns_for(start_ns=start_ns, end_ns=end_ns)
    out: dict[int, dict[int, Point]] = {d: {} for d in device_ids}
    minutes = (
        GpuSampleMinute.objects.filter(
            device_id__in=device_ids, minute_unix_nano__gte=start_ns, minute_unix_nano__lt=end_ns
        )
        .annotate(bucket=ExpressionWrapper(F("minute_unix_nano") / bucket, output_field=BigIntegerField()))
        .values("device_id", "bucket")
        .annotate(util=Avg("utilization_gpu_avg"), mem=Max("memory_used_bytes_max"), power=Avg("power_mw_avg"))
    )
    raw = (
        GpuSample.objects.filter(device_id__in=device_ids, time_unix_nano__gte=start_ns, time_unix_nano__lt=end_ns)
        .annotate(bucket=ExpressionWrapper(F("time_unix_nano") / bucket, output_field=BigIntegerField()))
        .values("device_id", "bucket")
        .annotate(util=Avg("utilization_gpu"), mem=Max("memory_used_bytes"), power=Avg("power_mw"))
    )
    # Raw samples win where a bucket has both (the rollups are of older, deleted samples).
    for row in [*minutes, *raw]:
        out[row["device_id"]][row["bucket"]] = Point(
            time_ns=row["bucket"] * bucket,
            utilization_gpu=row["util"],
            memory_used_bytes=row["mem"],
            power_w=None if row["power"] is None else row["power"] / 1000,
        )
    return {d: [points[b] for b in sorted(points)] for d, points in out.items()}


def _device_prices(project: Project, devices: list[GpuDevice]) -> dict[int, Decimal | None]:
    prices = {d.pk: gpu_default_price(gpu_name=d.name) for d in devices}
    for endpoint in Endpoint.objects.filter(project=project).prefetch_related("devices"):
        served = [d for d in endpoint.devices.all() if d.pk in prices]
        prices.update(endpoint_gpu_prices(endpoint=endpoint, devices=served))
    return prices


def devices_summary(*, project: Project, start_ns: int, end_ns: int) -> list[DeviceSummary]:
    """Each device with what it measured over the range: sampled time, energy (counter delta, else
    mean power x time), average utilization, peak power, its price, and its series."""
    devices = list(GpuDevice.objects.filter(project=project).order_by("host", "index"))
    prices = _device_prices(project, devices)
    ids = [d.pk for d in devices]
    raw = {
        row["device_id"]: row
        for row in GpuSample.objects.filter(device_id__in=ids, time_unix_nano__gte=start_ns, time_unix_nano__lt=end_ns)
        .values("device_id")
        .annotate(
            n=Count("time_unix_nano"),
            first=Min("time_unix_nano"),
            last=Max("time_unix_nano"),
            e0=Min("energy_mj"),
            e1=Max("energy_mj"),
            util=Avg("utilization_gpu"),
            power=Avg("power_mw"),
            peak=Max("power_mw"),
        )
    }
    rolled = {
        row["device_id"]: row
        for row in GpuSampleMinute.objects.filter(
            device_id__in=ids, minute_unix_nano__gte=start_ns, minute_unix_nano__lt=end_ns
        )
        .values("device_id")
        .annotate(
            covered=Sum("covered_seconds"),
            energy=Sum("energy_j"),
            util=Avg("utilization_gpu_avg"),
            peak=Max("power_mw_max"),
        )
    }
    series = device_series(device_ids=ids, start_ns=start_ns, end_ns=end_ns)
    out = []
    for device in devices:
        summary = DeviceSummary(device=device, price_per_hour=prices.get(device.pk), series=series[device.pk])
        r, m = raw.get(device.pk), rolled.get(device.pk)
        energy: float | None = None
        peaks = []
        if r and r["n"] > 1:
            seconds = (r["last"] - r["first"]) / NS
            summary.sampled_seconds += seconds
            if r["e0"] is not None:
                # The counter only grows between driver reloads; a reload in the range undercounts.
                energy = (r["e1"] - r["e0"]) / 1000
            elif r["power"] is not None:
                energy = r["power"] / 1000 * seconds
            summary.utilization_avg = r["util"]
            peaks.append(r["peak"])
        if m:
            summary.sampled_seconds += m["covered"] or 0.0
            if m["energy"] is not None:
                energy = (energy or 0.0) + m["energy"]
            summary.utilization_avg = summary.utilization_avg if summary.utilization_avg is not None else m["util"]
            peaks.append(m["peak"])
        summary.energy_j = energy
        peaks = [p for p in peaks if p is not None]
        summary.power_max_w = max(peaks) / 1000 if peaks else None
        out.append(summary)
    return out


def attributed_totals(*, project: Project, start_ns: int, end_ns: int) -> dict:
    """GPU seconds, Wh and dollars attributed to the traces that started in the range."""
    on_gpus = Q(gpu_seconds__isnull=False)
    sums = Trace.objects.filter(
        project=project, start_time_unix_nano__gte=start_ns, start_time_unix_nano__lt=end_ns
    ).aggregate(
        n=Count("pk", filter=on_gpus),
        seconds=Sum("gpu_seconds"),
        energy=Sum("gpu_energy_wh"),
        gpu=Sum("gpu_cost"),
        api=Sum("cost", filter=on_gpus),
    )
    return {
        "traces": sums["n"],
        "gpu_seconds": sums["seconds"],
        "gpu_energy_wh": sums["energy"],
        "gpu_cost": sums["gpu"],
        "api_cost": sums["api"],
    }


def active_traces(*, project: Project, start_ns: int, end_ns: int, limit: int = 200) -> list[dict]:
    """The traces that used GPUs in the range (newest first), for the overlay."""
    return list(
        Trace.objects.filter(
            project=project,
            start_time_unix_nano__lt=end_ns,
            start_time_unix_nano__gte=start_ns,
            gpu_seconds__isnull=False,
        )
        .order_by("-start_time_unix_nano")
        .values("trace_id", "root_span_name", "start_time_unix_nano", "end_time_unix_nano", "gpu_seconds", "gpu_cost")[
            :limit
        ]
    )


def trace_gpu_steps(*, project: Project, trace_id: str) -> list[dict]:
    """The spans of a trace that GPU attribution reached, in start order."""
    steps = list(
        Span.objects.filter(project=project, trace_id=trace_id, gpu_seconds__isnull=False)
        .order_by("start_time_unix_nano", "span_id")
        .values(
            "span_id",
            "name",
            "agent_name",
            "model",
            "start_time_unix_nano",
            "end_time_unix_nano",
            "cost",
            "gpu_seconds",
            "gpu_energy_wh",
            "gpu_cost",
        )
    )
    for step in steps:
        step["duration_ns"] = step["end_time_unix_nano"] - step["start_time_unix_nano"]
    return steps


def trace_devices(*, project: Project, trace_id: str) -> list[GpuDevice]:
    """The GPUs of the endpoints that served this trace's attributed spans (via server.address)."""
    addresses = {
        a.lower()
        for a in Span.objects.filter(project=project, trace_id=trace_id, gpu_seconds__isnull=False).values_list(
            "attributes__server.address", flat=True
        )
        if isinstance(a, str)
    }
    if not addresses:
        return []
    return list(
        GpuDevice.objects.filter(project=project, endpoints__server_address__in=addresses)
        .distinct()
        .order_by("host", "index")
    )
