"""Retention (tracer/retention.py): data past a project's horizon goes in bounded steps; nothing
inside it, and nothing of another project, is touched."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from tests.factories import ingest_spans, otlp_span, sid, tid
from tracer.models import GpuDevice, GpuSample, GpuSampleMinute, IngestBatch, Project, Span, Trace
from tracer.retention import PROJECT_TASK, retention_apply, retention_fan_out, retention_horizon
from tracer.rollup import traces_lock

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NS = 1_000_000_000
DAY = 86_400 * NS


def at(days_ago: float) -> int:
    return int((NOW - timedelta(days=days_ago)).timestamp() * NS)


def trace(project: Project, n: int, *, start_days_ago: float, end_days_ago: float) -> str:
    """Trace tid(n): a root and a child; the child ends `end_days_ago`."""
    start, end = at(start_days_ago), at(end_days_ago)
    ingest_spans(
        project,
        otlp_span(sid(1), trace=tid(n), start=start, duration=1),
        otlp_span(sid(2), sid(1), trace=tid(n), start=start + 1, duration=end - start - 1),
    )
    return tid(n)


def kept(project: Project) -> set[str]:
    return set(Trace.objects.filter(project=project).values_list("trace_id", flat=True))


@pytest.fixture
def a30(project_a) -> Project:
    project_a.retention_days = 30
    project_a.save(update_fields=["retention_days"])
    return project_a


def test_the_horizon_is_the_projects_own_else_the_servers(project_a, settings) -> None:
    settings.OCTOTRACE_RETENTION_DAYS = 7
    assert retention_horizon(project=project_a, now=NOW) == NOW - timedelta(days=7)
    project_a.retention_days = 90
    assert retention_horizon(project=project_a, now=NOW) == NOW - timedelta(days=90)


def test_whole_traces_past_the_horizon_go_with_their_spans_and_the_rest_stays(a30, project_b) -> None:
    gone = trace(a30, 1, start_days_ago=40, end_days_ago=39)
    straddling = trace(a30, 2, start_days_ago=31, end_days_ago=29)  # ended inside the horizon: kept whole
    recent = trace(a30, 3, start_days_ago=2, end_days_ago=1)
    project_b.retention_days = 90
    project_b.save(update_fields=["retention_days"])
    theirs = trace(project_b, 4, start_days_ago=40, end_days_ago=39)

    result = retention_apply(project_id=a30.pk, now=NOW)

    assert (result.traces, result.spans) == (1, 2)
    assert kept(a30) == {straddling, recent}
    assert not Span.objects.filter(project=a30, trace_id=gone).exists()
    assert Span.objects.filter(project=a30, trace_id=straddling).count() == 2
    assert kept(project_b) == {theirs}
    assert Span.objects.filter(project=project_b).count() == 2


def test_old_finished_batches_go_and_unfinished_or_recent_ones_stay(a30) -> None:
    trace(a30, 1, start_days_ago=2, end_days_ago=1)
    done_old, done_recent = list(IngestBatch.objects.filter(project=a30)) * 2
    IngestBatch.objects.filter(pk=done_old.pk).update(received_at=NOW - timedelta(days=31))
    pending_old = IngestBatch.objects.create(
        project=a30, body=b"", body_size=0, content_type="application/x-protobuf", span_count=0,
        received_at=NOW - timedelta(days=45), status=IngestBatch.Status.PENDING,
    )  # fmt: skip
    recent = IngestBatch.objects.create(
        project=a30, body=b"", body_size=0, content_type="application/x-protobuf", span_count=0,
        received_at=NOW - timedelta(days=1), status=IngestBatch.Status.DONE,
    )  # fmt: skip

    result = retention_apply(project_id=a30.pk, now=NOW)

    assert result.batches == 1
    assert set(IngestBatch.objects.filter(project=a30).values_list("pk", flat=True)) == {pending_old.pk, recent.pk}


def test_gpu_samples_and_minutes_of_the_projects_devices_go_past_the_horizon(a30, project_b) -> None:
    mine = GpuDevice.objects.create(project=a30, host="h", uuid="GPU-a", name="H100")
    theirs = GpuDevice.objects.create(project=project_b, host="h", uuid="GPU-b", name="H100")
    for device in (mine, theirs):
        GpuSample.objects.bulk_create(GpuSample(device=device, time_unix_nano=at(d)) for d in (40, 35, 31, 29, 1))
        GpuSampleMinute.objects.bulk_create(
            GpuSampleMinute(device=device, minute_unix_nano=at(d), sample_count=60) for d in (50, 5)
        )

    result = retention_apply(project_id=a30.pk, now=NOW, chunk=2)

    assert (result.gpu_samples, result.gpu_minutes) == (3, 1)
    assert sorted(GpuSample.objects.filter(device=mine).values_list("time_unix_nano", flat=True)) == [at(29), at(1)]
    assert GpuSampleMinute.objects.filter(device=mine).count() == 1
    assert GpuSample.objects.filter(device=theirs).count() == 5
    assert GpuSampleMinute.objects.filter(device=theirs).count() == 2


def test_it_works_in_chunks_and_stops_when_its_time_is_up(a30) -> None:
    for n in range(1, 6):
        trace(a30, n, start_days_ago=60 - n, end_days_ago=59 - n)
    steps: list[int] = []

    assert retention_apply(project_id=a30.pk, now=NOW, budget_s=0).done is False
    assert Trace.objects.filter(project=a30).count() == 5
    result = retention_apply(project_id=a30.pk, now=NOW, chunk=2, on_step=lambda r: steps.append(r.traces))

    assert result.done and result.traces == 5
    assert steps[:3] == [2, 4, 5]  # the trace steps, then the batch steps (which delete no trace)
    assert not Trace.objects.filter(project=a30).exists()


@pytest.mark.django_db(transaction=True)
def test_a_trace_extended_by_a_late_batch_while_retention_waits_for_its_lock_is_kept(a30) -> None:
    """Ingest holds the trace's lock and adds a span of today; retention, blocked on that lock, reads
    the trace again once it has it, finds it no longer past the horizon, and keeps it whole."""
    if connection.vendor != "postgresql":
        pytest.skip("advisory locks need PostgreSQL (SQLite runs one writer at a time)")
    old = trace(a30, 1, start_days_ago=40, end_days_ago=39)
    locked = threading.Event()
    outcome: dict[str, object] = {}

    def late_batch() -> None:
        try:
            with transaction.atomic():
                traces_lock(project_id=a30.pk, trace_ids=[old])
                locked.set()
                _wait_for_a_blocked_advisory_lock()
                ingest_spans(a30, otlp_span(sid(3), sid(1), trace=old, start=at(0.5), duration=NS))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["ingest"] = repr(exc)
        finally:
            connections.close_all()

    def retention() -> None:
        try:
            assert locked.wait(30)
            outcome["result"] = retention_apply(project_id=a30.pk, now=NOW)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["retention"] = repr(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=late_batch), threading.Thread(target=retention)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert "ingest" not in outcome and "retention" not in outcome, outcome
    assert outcome["result"].traces == 0
    assert Span.objects.filter(project=a30, trace_id=old).count() == 3


def _wait_for_a_blocked_advisory_lock(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if cursor.fetchone()[0] > 0:
                return
            time.sleep(0.02)
    raise TimeoutError("retention never waited for the trace lock")


def test_the_sweep_sends_one_task_per_project(project_a, project_b, monkeypatch) -> None:
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr("tracer.retention.task_send", lambda name, *args: sent.append((name, args)) or True)
    assert retention_fan_out() == 2
    assert sent == [(PROJECT_TASK, (project_a.pk,)), (PROJECT_TASK, (project_b.pk,))]


def test_the_command_reports_what_it_deleted(a30, settings) -> None:
    trace(a30, 1, start_days_ago=400, end_days_ago=399)
    out = StringIO()
    call_command("retention", "--project", a30.slug, stdout=out)
    assert f"{a30.slug}: kept 30 days" in out.getvalue()
    # Its batch was received today: it stays until its own horizon.
    assert "deleted 1 trace(s), 2 span(s), 0 batch(es)" in out.getvalue()


def test_pages_say_how_far_back_data_goes(client, a30, bob) -> None:
    client.force_login(bob)
    html = client.get(f"/p/{a30.slug}/traces/").content.decode()
    assert "Data kept 30 days" in html
