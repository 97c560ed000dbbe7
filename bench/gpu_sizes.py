"""GPU telemetry storage: bytes per raw sample and per minute rollup in PostgreSQL, measured, then
extrapolated to a year of 1 Hz samples from 8 GPUs (docs/gpu-attribution.md, "Sizes").

It writes `--hours` of 1 Hz samples for 8 GPUs (realistic, varying values; per-process lists on
none) into the database DATABASE_URL names, measures table + index size, rolls them all up with the
real downsampling service (timed), and measures the rollups.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octotrace_gpu_bench OCTOTRACE_LOCAL_DEV=1 \
    .venv/bin/python bench/gpu_sizes.py --hours 6

It also times one periodic attribution pass: `--spans` LLM calls over the last 30 minutes of
samples on one endpoint served by the 8 GPUs.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from tracer.gpu.attribution import gpu_attribute  # noqa: E402
from tracer.gpu.prices import endpoint_upsert  # noqa: E402
from tracer.gpu.retention import samples_downsample  # noqa: E402
from tracer.models import Endpoint, GpuDevice, GpuSample, GpuSampleMinute, Project, Span, Trace  # noqa: E402

GPUS = 8
S = 1_000_000_000
YEAR_SECONDS = 365 * 86400


def table_bytes(table: str) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("SELECT pg_table_size(%s), pg_indexes_size(%s)", [table, table])
        return cursor.fetchone()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=6)
    parser.add_argument("--spans", type=int, default=2000, help="LLM calls in the attribution window")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("point DATABASE_URL at a scratch PostgreSQL database")
    call_command("migrate", verbosity=0)
    GpuSampleMinute.objects.all().delete()
    GpuSample.objects.all().delete()
    project, _ = Project.objects.get_or_create(slug="gpu-bench", defaults={"name": "GPU bench"})
    devices = [
        GpuDevice.objects.get_or_create(
            project=project, uuid=f"GPU-bench-{i}", defaults={"host": "bench", "index": i, "name": "NVIDIA H100"}
        )[0]
        for i in range(GPUS)
    ]
    seconds = int(args.hours * 3600)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    t0 = int(start.timestamp()) * S
    rng = random.Random(6)
    started = time.perf_counter()
    for device in devices:
        energy = rng.randrange(10**9)
        rows = []
        for t in range(seconds):
            power = rng.randrange(80_000, 700_000)
            energy += power // 1000
            rows.append(
                GpuSample(
                    device=device,
                    time_unix_nano=t0 + t * S + rng.randrange(1000),
                    utilization_gpu=rng.randrange(101),
                    utilization_memory=rng.randrange(101),
                    memory_used_bytes=rng.randrange(80 * 2**30),
                    power_mw=power,
                    energy_mj=energy,
                    temperature_c=rng.randrange(30, 85),
                    sm_clock_mhz=rng.randrange(345, 1980),
                )
            )
        GpuSample.objects.bulk_create(rows, batch_size=5000)
    write_s = time.perf_counter() - started
    raw_rows = GpuSample.objects.count()
    raw_table, raw_index = table_bytes("tracer_gpusample")
    attribution_line = attribution_bench(project, devices, t0, seconds, args.spans)

    settings.OCTOTRACE_GPU_RAW_RETENTION_HOURS = 1
    started = time.perf_counter()
    result = samples_downsample(now=start + timedelta(seconds=seconds) + timedelta(hours=1, minutes=1))
    downsample_s = time.perf_counter() - started
    minute_rows = GpuSampleMinute.objects.count()
    minute_table, minute_index = table_bytes("tracer_gpusampleminute")

    per_raw = (raw_table + raw_index) / raw_rows
    per_minute = (minute_table + minute_index) / minute_rows
    year_raw = GPUS * YEAR_SECONDS
    raw_kept = GPUS * settings_hours() * 3600
    year_minutes = GPUS * YEAR_SECONDS // 60
    print(f"samples written: {raw_rows:,} ({GPUS} GPUs x {seconds:,} s) in {write_s:.1f} s (bulk_create)")
    print(f"raw sample: {raw_table / raw_rows:.1f} B table + {raw_index / raw_rows:.1f} B index = {per_raw:.1f} B/row")
    print(f"downsample: {result.minutes:,} rollups from {result.deleted:,} samples in {downsample_s:.1f} s")
    table, index = minute_table / minute_rows, minute_index / minute_rows
    print(f"minute rollup: {table:.1f} B table + {index:.1f} B index = {per_minute:.1f} B/row")
    print(f"a year of 1 Hz x {GPUS} GPUs, all raw: {year_raw:,} rows = {year_raw * per_raw / 2**30:.1f} GiB")
    print(attribution_line)
    raw_gib, minutes_gib = raw_kept * per_raw / 2**30, year_minutes * per_minute / 2**30
    print(
        f"with the defaults ({settings_hours()} h raw, then minutes): {raw_kept:,} raw rows ({raw_gib:.2f} GiB)"
        f" + {year_minutes:,} rollups ({minutes_gib:.2f} GiB)"
    )


def attribution_bench(project: Project, devices: list[GpuDevice], t0: int, seconds: int, spans: int) -> str:
    """`spans` LLM calls of 0.5-8 s over the last 30 minutes of samples, one endpoint on all 8 GPUs,
    in traces of 10 calls; then one gpu_attribute over that window, timed."""
    Span.objects.filter(project=project).delete()
    Trace.objects.filter(project=project).delete()
    Endpoint.objects.filter(project=project).delete()
    endpoint_upsert(
        project=project, name="nim", base_url="http://nim.bench:8000", device_uuids=[d.uuid for d in devices]
    )
    rng = random.Random(7)
    window_start = t0 + (seconds - 1800) * S
    rows, traces = [], []
    for n in range(spans):
        trace_id = f"{n // 10:032x}"
        start = window_start + rng.randrange(1800 * S)
        end = start + rng.randrange(S // 2, 8 * S)
        if n % 10 == 0:
            traces.append(
                Trace(
                    project=project, trace_id=trace_id, start_time_unix_nano=start - S, end_time_unix_nano=end + 60 * S
                )
            )
        rows.append(
            Span(
                project=project,
                trace_id=trace_id,
                span_id=f"{n:016x}",
                name="chat nemotron",
                kind="llm",
                billed=True,
                start_time_unix_nano=start,
                end_time_unix_nano=end,
                attributes={"server.address": "nim.bench", "server.port": 8000},
            )
        )
    Trace.objects.bulk_create(traces)
    Span.objects.bulk_create(rows, batch_size=2000)
    started = time.perf_counter()
    result = gpu_attribute(project_id=project.pk, start_ns=window_start, end_ns=window_start + 1800 * S)
    took = time.perf_counter() - started
    return (
        f"attribution: {result.attributed:,} of {result.spans:,} spans, {result.traces:,} traces, "
        f"30 min x {len(devices)} GPUs at 1 Hz, in {took:.2f} s"
    )


def settings_hours() -> int:
    return int(os.environ.get("OCTOTRACE_GPU_RAW_RETENTION_HOURS", 24 * 7))


if __name__ == "__main__":
    main()
