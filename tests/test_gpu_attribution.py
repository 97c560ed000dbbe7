"""Attribution of GPU seconds, energy and dollars to LLM spans (tracer/gpu/attribution.py).

Figures are worked out by hand in the comments; times are in seconds from T0.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.db import InterfaceError, OperationalError

import tracer.tasks  # noqa: F401 - registers the tasks with the Celery app
from tracer.celery import app as celery_app
from tracer.gpu.attribution import (
    ATTRIBUTE_PROJECT_TASK,
    ATTRIBUTE_TASK,
    gpu_attribute,
    gpu_attribute_fan_out,
    gpu_attribute_recent,
    gpu_attribution_project_ids,
    gpu_by_agent,
)
from tracer.gpu.intervals import Interval, WindowTotals, interval_energy_j, intervals_from_samples, split_intervals
from tracer.gpu.prices import endpoint_upsert
from tracer.models import GpuDevice, GpuSample, GpuSampleMinute, Span, Trace

S = 1_000_000_000
T0 = 1_780_000_000 * S


def iv(start: float, end: float, joules: float | None, device: int = 1) -> Interval:
    return Interval(device_id=device, start_ns=int(start * S), end_ns=int(end * S), energy_j=joules, utilization_gpu=90)


def req(key: str, start: float, end: float) -> tuple[str, int, int]:
    return key, int(start * S), int(end * S)


# --- The model, on its own ----------------------------------------------------------------


def test_two_overlapping_requests_on_one_gpu_split_its_seconds_and_energy() -> None:
    # Four 1 s intervals spending 100, 300, 500 and 700 J. A runs 0-3, B runs 1-4.
    intervals = [iv(0, 1, 100), iv(1, 2, 300), iv(2, 3, 500), iv(3, 4, 700)]
    totals = WindowTotals()
    shares = split_intervals(requests=[req("A", 0, 3), req("B", 1, 4)], intervals=intervals, totals=totals)
    # A: 1 s alone + half of two shared seconds = 2 s; 100 + 300/2 + 500/2 = 500 J.
    assert shares["A"].seconds == pytest.approx(2.0)
    assert shares["A"].energy_j == pytest.approx(500.0)
    # B: half of two shared seconds + 1 s alone = 2 s; 300/2 + 500/2 + 700 = 1100 J.
    assert shares["B"].seconds == pytest.approx(2.0)
    assert shares["B"].energy_j == pytest.approx(1100.0)
    # Together they got exactly what the GPU measured, and nothing was idle.
    assert shares["A"].seconds + shares["B"].seconds == pytest.approx(totals.measured_seconds) == pytest.approx(4.0)
    assert shares["A"].energy_j + shares["B"].energy_j == pytest.approx(totals.measured_energy_j) == 1600
    assert totals.idle_seconds == 0 and totals.idle_energy_j == 0


def test_a_request_outside_every_sample_interval_gets_nothing() -> None:
    shares = split_intervals(requests=[req("late", 10, 11), req("in", 0, 1)], intervals=[iv(0, 1, 50)])
    assert "late" not in shares
    assert shares["in"].energy_j == 50


def test_requests_covering_part_of_an_interval_get_that_part_and_the_rest_is_idle() -> None:
    totals = WindowTotals()
    # One 2 s interval of 400 J; the request covers 0.5-1.0: a quarter of it.
    shares = split_intervals(requests=[req("A", 0.5, 1.0)], intervals=[iv(0, 2, 400)], totals=totals)
    assert shares["A"].seconds == pytest.approx(0.5)
    assert shares["A"].energy_j == pytest.approx(100.0)
    assert totals.idle_seconds == pytest.approx(1.5) and totals.idle_energy_j == pytest.approx(300.0)
    assert totals.attributed_seconds + totals.idle_seconds == pytest.approx(totals.measured_seconds)


def test_eight_concurrent_requests_each_get_an_eighth() -> None:
    requests = [req(f"r{i}", 0, 10) for i in range(8)]
    intervals = [iv(t, t + 1, 640) for t in range(10)]
    shares = split_intervals(requests=requests, intervals=intervals)
    assert {round(s.seconds, 9) for s in shares.values()} == {1.25}
    assert {round(s.energy_j, 6) for s in shares.values()} == {800.0}


def test_a_request_on_two_gpus_gets_seconds_on_each() -> None:
    shares = split_intervals(requests=[req("A", 0, 1)], intervals=[iv(0, 1, 300, device=1), iv(0, 1, 200, device=2)])
    assert shares["A"].seconds_by_device == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}
    assert shares["A"].energy_j == pytest.approx(500.0)


def test_an_interval_without_energy_makes_the_energy_unknown_not_zero() -> None:
    shares = split_intervals(requests=[req("A", 0, 2)], intervals=[iv(0, 1, 100), iv(1, 2, None)])
    assert shares["A"].seconds == pytest.approx(2.0)
    assert shares["A"].energy_known is False


def test_intervals_use_the_energy_counter_else_mean_power_and_skip_gaps() -> None:
    samples = [
        (0 * S, 50, 300_000, 10_000),
        (1 * S, 60, 500_000, 10_450),  # counter: 0.45 J... over 1 s
        (2 * S, 70, 400_000, 5_000),  # counter went backwards (driver reload): mean power 450 W x 1 s
        (100 * S, 70, 400_000, 6_000),  # 98 s later: the sampler was down, no interval
    ]
    intervals = intervals_from_samples(device_id=1, samples=samples, max_gap_ns=30 * S)
    assert [(i.start_ns, i.end_ns) for i in intervals] == [(0, S), (S, 2 * S)]
    assert intervals[0].energy_j == pytest.approx(0.45)
    assert intervals[1].energy_j == pytest.approx(450.0)
    assert intervals[1].utilization_gpu == 70
    no_data = dict(start_energy_mj=None, end_energy_mj=None, start_power_mw=None, end_power_mw=None, seconds=1)
    assert interval_energy_j(**no_data) is None


# --- On the database ----------------------------------------------------------------------


@pytest.fixture
def h100(project_a) -> GpuDevice:
    """One H100 sampled at 1 Hz from T0 to T0+4 s; its counter spends 100, 300, 500, 700 J."""
    device = GpuDevice.objects.create(project=project_a, host="nim-1", uuid="GPU-h100", name="NVIDIA H100 80GB HBM3")
    counter = [0, 100_000, 400_000, 900_000, 1_600_000]  # mJ
    GpuSample.objects.bulk_create(
        GpuSample(device=device, time_unix_nano=T0 + t * S, utilization_gpu=90, power_mw=400_000, energy_mj=counter[t])
        for t in range(5)
    )
    return device


def add_span(
    project, trace: str, span: str, start: float, end: float, *, parent: str = "", t0: int = T0, **attrs
) -> Span:
    trace_id, span_id = trace.ljust(32, "0"), span.ljust(16, "0")
    parent_id = parent.ljust(16, "0") if parent else ""
    Trace.objects.update_or_create(
        project=project,
        trace_id=trace_id,
        defaults={"start_time_unix_nano": t0 - 10 * S, "end_time_unix_nano": t0 + 20 * S},
    )
    attributes = {"server.address": "nim.internal", "server.port": 8000, **attrs}
    return Span.objects.create(
        project=project,
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_id,
        name="chat nemotron",
        kind="llm",
        start_time_unix_nano=t0 + int(start * S),
        end_time_unix_nano=t0 + int(end * S),
        attributes=attributes,
    )


@pytest.mark.django_db
def test_it_stores_each_spans_share_and_the_trace_totals(project_a, h100) -> None:
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000/v1", device_uuids=["GPU-h100"])
    a = add_span(project_a, "aa", "a1", 0, 3)
    b = add_span(project_a, "bb", "b1", 1, 4)
    outside = add_span(project_a, "bb", "b2", 10, 12)
    elsewhere = add_span(project_a, "bb", "b3", 0, 4, **{"server.address": "api.openai.com", "server.port": 443})

    before = Trace.objects.get(project=project_a, trace_id="bb".ljust(32, "0")).updated_at
    result = gpu_attribute(project_id=project_a.pk, start_ns=T0 - 60 * S, end_ns=T0 + 60 * S)
    assert (result.spans, result.attributed, result.traces) == (3, 2, 2)

    for span in (a, b, outside, elsewhere):
        span.refresh_from_db()
    assert a.gpu_seconds == pytest.approx(2.0) and a.gpu_energy_wh == pytest.approx(500 / 3600)
    assert b.gpu_seconds == pytest.approx(2.0) and b.gpu_energy_wh == pytest.approx(1100 / 3600)
    # 2 GPU-seconds of an H100 at the default $2.50 an hour.
    assert a.gpu_cost == Decimal("0.0013888889")
    # Outside every sample interval: unknown, not zero. Another host: not attributed at all.
    assert (outside.gpu_seconds, outside.gpu_energy_wh, outside.gpu_cost) == (None, None, None)
    assert elsewhere.gpu_seconds is None
    # Totals equal what the GPU measured: 4 s and 1.6 kJ (counter 0 -> 1,600,000 mJ).
    assert a.gpu_seconds + b.gpu_seconds == pytest.approx(4.0)
    assert (a.gpu_energy_wh + b.gpu_energy_wh) * 3600 == pytest.approx(1600.0)
    trace_b = Trace.objects.get(project=project_a, trace_id="bb".ljust(32, "0"))
    assert trace_b.gpu_seconds == pytest.approx(b.gpu_seconds)
    assert trace_b.gpu_cost == b.gpu_cost
    assert trace_b.updated_at > before  # its spans changed: a cached call tree of it is stale

    # A rerun (late samples, late spans) replaces the figures, it does not add to them.
    gpu_attribute(project_id=project_a.pk, start_ns=T0 - 60 * S, end_ns=T0 + 60 * S)
    a.refresh_from_db()
    assert a.gpu_seconds == pytest.approx(2.0)


@pytest.mark.django_db
def test_a_call_late_in_a_trace_that_began_days_ago_is_attributed(project_a, h100, settings) -> None:
    """A long-running agent's trace: its root started three days before the window. Spans are found
    by their own start time, so only the call's own length is bounded (OCTOTRACE_GPU_MAX_CALL_SECONDS)."""
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-h100"])
    call = add_span(project_a, "dd", "d1", 0, 4)
    Trace.objects.filter(trace_id="dd".ljust(32, "0")).update(start_time_unix_nano=T0 - 3 * 86_400 * S)
    # A call that began two hours before the window and lasted into it: longer than the bound of one hour.
    marathon = add_span(project_a, "dd", "d2", -7200, 2)

    gpu_attribute(project_id=project_a.pk, start_ns=T0, end_ns=T0 + 4 * S)

    call.refresh_from_db()
    marathon.refresh_from_db()
    assert call.gpu_seconds == pytest.approx(4.0)  # the GPU's 4 s, all to the one call in the bound
    assert marathon.gpu_seconds is None
    settings.OCTOTRACE_GPU_MAX_CALL_SECONDS = 3 * 3600
    gpu_attribute(project_id=project_a.pk, start_ns=T0, end_ns=T0 + 4 * S)
    call.refresh_from_db()
    marathon.refresh_from_db()
    # Both now share the two seconds (0-2 s) they overlap: 1 + 2 = 3 s for the call, 1 s for the marathon.
    assert (call.gpu_seconds, marathon.gpu_seconds) == (pytest.approx(3.0), pytest.approx(1.0))


@pytest.mark.django_db
def test_a_call_seen_twice_nested_counts_once(project_a, h100) -> None:
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-h100"])
    outer = add_span(project_a, "cc", "c1", 0, 4)
    inner = add_span(project_a, "cc", "c2", 0, 4, parent="c1")
    gpu_attribute(project_id=project_a.pk, start_ns=T0, end_ns=T0 + 4 * S)
    outer.refresh_from_db()
    inner.refresh_from_db()
    # The framework span and the client span are one request: it had the GPU to itself.
    assert outer.gpu_seconds == pytest.approx(4.0)
    assert inner.gpu_seconds is None
    # Where the inner one is the billed call, the GPU figures go there, next to its token cost.
    Span.objects.filter(pk=inner.pk).update(billed=True)
    gpu_attribute(project_id=project_a.pk, start_ns=T0, end_ns=T0 + 4 * S)
    inner.refresh_from_db()
    assert inner.gpu_seconds == pytest.approx(4.0)


def test_gpu_figures_add_up_per_agent() -> None:
    spans = [
        {"agent_name": "planner", "gpu_seconds": 1.0, "gpu_energy_wh": 0.1, "gpu_cost": Decimal("0.001")},
        {"agent_name": "planner", "gpu_seconds": 2.0, "gpu_energy_wh": 0.2, "gpu_cost": Decimal("0.002")},
        {"agent_name": "writer", "gpu_seconds": 0.5, "gpu_energy_wh": None, "gpu_cost": None},
        {"agent_name": "writer", "gpu_seconds": None, "gpu_energy_wh": None, "gpu_cost": None},
    ]
    planner, writer = gpu_by_agent(spans=spans)
    assert planner == {
        "agent": "planner",
        "gpu_seconds": 3.0,
        "gpu_energy_wh": pytest.approx(0.3),
        "gpu_cost": Decimal("0.003"),
    }
    assert writer == {"agent": "writer", "gpu_seconds": 0.5, "gpu_energy_wh": None, "gpu_cost": None}


@pytest.mark.django_db
def test_electricity_is_added_and_an_unknown_gpu_model_is_unpriced(project_a, h100) -> None:
    endpoint = endpoint_upsert(
        project=project_a,
        name="nim",
        base_url="nim.internal",  # any port
        device_uuids=["GPU-h100"],
        gpu_hour_price=Decimal("3.60"),
        electricity_kwh_price=Decimal("0.20"),
    )
    span = add_span(project_a, "dd", "d1", 0, 4)
    gpu_attribute(project_id=project_a.pk, start_ns=T0, end_ns=T0 + 4 * S)
    span.refresh_from_db()
    # 4 s at $3.60/h = $0.004, plus 1600 J = 0.000444 kWh at $0.20 = $0.0000888889.
    assert span.gpu_cost == Decimal("0.0040888889")

    endpoint.gpu_hour_price = None
    endpoint.save()
    GpuDevice.objects.filter(pk=h100.pk).update(name="Some Future GPU")
    gpu_attribute(project_id=project_a.pk, start_ns=T0, end_ns=T0 + 4 * S)
    span.refresh_from_db()
    assert span.gpu_seconds == pytest.approx(4.0)
    assert span.gpu_cost is None  # unpriced, never $0


@pytest.mark.django_db
def test_another_projects_endpoint_attributes_nothing_here(project_a, project_b, h100) -> None:
    other = GpuDevice.objects.create(project=project_b, host="x", uuid="GPU-b", name="NVIDIA H100")
    assert other.pk != h100.pk
    endpoint_upsert(project=project_b, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-b"])
    span = add_span(project_a, "ee", "e1", 0, 4)
    assert gpu_attribute(project_id=project_a.pk, start_ns=T0, end_ns=T0 + 4 * S).spans == 0
    span.refresh_from_db()
    assert span.gpu_seconds is None


@pytest.mark.django_db
def test_the_trace_api_shows_gpu_figures_next_to_token_costs(client, project_a, key_a, h100) -> None:
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-h100"])
    add_span(project_a, "ff", "f1", 0, 4, **{"gen_ai.agent.name": "planner"})
    Span.objects.filter(span_id="f1".ljust(16, "0")).update(agent_name="planner", billed=True, cost=Decimal("0.01"))
    gpu_attribute(project_id=project_a.pk, start_ns=T0, end_ns=T0 + 4 * S)
    headers = {"Authorization": f"Bearer {key_a[1]}"}
    detail = client.get(f"/api/v1/traces/{'ff'.ljust(32, '0')}", headers=headers).json()
    assert detail["trace"]["gpu_seconds"] == pytest.approx(4.0)
    assert Decimal(detail["trace"]["gpu_cost"]) == Decimal("0.0027777778")
    (span,) = detail["spans"]
    assert (Decimal(span["cost"]), span["gpu_seconds"]) == (Decimal("0.01"), pytest.approx(4.0))
    assert span["gpu_energy_wh"] == pytest.approx(1600 / 3600)
    assert detail["gpu_by_agent"][0]["agent"] == "planner"
    totals = client.get("/api/v1/traces", headers=headers).json()["totals"]
    assert Decimal(totals["gpu_cost"]) == Decimal("0.0027777778")


# --- When it runs: beat's sweep, one task per project ---------------------------------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list]]:
    """Tasks handed to the broker, by name and arguments (tracer.celery.task_send sends them)."""
    messages: list[tuple[str, list]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, countdown=None: messages.append((name, args)))
    return messages


@pytest.mark.django_db
def test_the_sweep_enqueues_one_task_per_project_with_gpu_samples_in_the_window(
    project_a, project_b, h100, sent
) -> None:
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-h100"])
    # Project B: an endpoint whose GPU was last sampled two hours before, and one without a GPU.
    old = GpuDevice.objects.create(project=project_b, host="nim-2", uuid="GPU-old", name="NVIDIA H100 80GB HBM3")
    GpuSample.objects.create(device=old, time_unix_nano=T0 - 7200 * S, utilization_gpu=50)
    endpoint_upsert(project=project_b, name="old", base_url="http://old.internal:8000", device_uuids=["GPU-old"])
    endpoint_upsert(project=project_b, name="bare", base_url="http://bare.internal:8000", device_uuids=[])
    span = add_span(project_a, "gg", "g1", 0, 4)

    assert gpu_attribute_fan_out(now_ns=T0 + 60 * S) == 1
    assert sent == [(ATTRIBUTE_PROJECT_TASK, [project_a.pk])]
    span.refresh_from_db()
    assert span.gpu_seconds is None  # the sweep attributes nothing itself

    # The selection follows the window: project B's old sample, then nobody's.
    assert gpu_attribution_project_ids(start_ns=T0 - 7260 * S, end_ns=T0 - 3600 * S) == [project_b.pk]
    assert gpu_attribution_project_ids(start_ns=T0 + 3600 * S, end_ns=T0 + 7200 * S) == []


@pytest.mark.django_db
def test_gpus_known_only_by_minute_rollups_are_selected_too(project_a) -> None:
    device = GpuDevice.objects.create(project=project_a, host="nim-1", uuid="GPU-old", name="NVIDIA H100 80GB HBM3")
    GpuSampleMinute.objects.create(device=device, minute_unix_nano=T0, sample_count=60, covered_seconds=60.0)
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-old"])
    assert gpu_attribution_project_ids(start_ns=T0, end_ns=T0 + 60 * S) == [project_a.pk]
    assert gpu_attribution_project_ids(start_ns=T0 + 120 * S, end_ns=T0 + 180 * S) == []


@pytest.mark.django_db
def test_a_projects_pass_covers_the_window_that_ends_now(project_a, h100, settings) -> None:
    settings.OCTOTRACE_GPU_ATTRIBUTION_WINDOW_MINUTES = 1
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-h100"])
    add_span(project_a, "hh", "h1", 0, 4)
    assert gpu_attribute_recent(project_id=project_a.pk, now_ns=T0 + 30 * S).attributed == 1
    # Three minutes on, the call is out of the one-minute window and is left as it was.
    assert gpu_attribute_recent(project_id=project_a.pk, now_ns=T0 + 180 * S).spans == 0


@pytest.mark.django_db
def test_beats_gpu_attribute_fans_out_and_the_project_task_attributes(project_a, sent) -> None:
    # Ten minutes ago: inside the window the tasks compute from their own clock.
    t0 = (time.time_ns() - 600 * S) // S * S
    device = GpuDevice.objects.create(project=project_a, host="nim-1", uuid="GPU-now", name="NVIDIA H100 80GB HBM3")
    GpuSample.objects.bulk_create(
        GpuSample(device=device, time_unix_nano=t0 + t * S, utilization_gpu=90, energy_mj=t * 100_000) for t in range(5)
    )
    endpoint_upsert(project=project_a, name="nim", base_url="http://nim.internal:8000", device_uuids=["GPU-now"])
    span = add_span(project_a, "ii", "i1", 0, 4, t0=t0)

    celery_app.tasks[ATTRIBUTE_TASK].apply().get()
    assert sent == [(ATTRIBUTE_PROJECT_TASK, [project_a.pk])]
    for name, args in sent:
        assert celery_app.tasks[name].apply(args=args).get() == 1
    span.refresh_from_db()
    assert span.gpu_seconds == pytest.approx(4.0)


def test_the_attribution_tasks_retry_a_database_away_and_stay_within_a_minute() -> None:
    for name in (ATTRIBUTE_TASK, ATTRIBUTE_PROJECT_TASK):
        task = celery_app.tasks[name]
        assert task.acks_late and task.ignore_result
        assert set(task.autoretry_for) == {OperationalError, InterfaceError}
        assert task.retry_backoff and task.max_retries
        # Beat sends the sweep every minute: one pass is over before the next one comes.
        assert task.soft_time_limit < task.time_limit < 60
