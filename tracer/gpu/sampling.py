"""The server's own sampler, for GPU hosts that run a Celery worker (`-Q gpu.<host>`).

Beat sends `gpu.sample` to the queue `gpu.<host>` of every host in OCTOTRACE_GPU_HOSTS every
OCTOTRACE_GPU_SAMPLE_SECONDS; only that host's worker consumes it. The task reads every GPU once per
OCTOTRACE_GPU_SAMPLE_INTERVAL_SECONDS until the next one is due, then writes the readings in one
bulk insert. Hosts without a worker run `octotrace gpu-agent` instead (OTLP metrics).

NVML is opened once per worker process and kept open. Where there is no NVML or no GPU, the first
task logs it once and every later one returns at once: no retry loop, no error per run.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from django.conf import settings

from octotrace.nvml import NvmlReader
from tracer.gpu.samples import SampleRecord, record_from_reading, samples_write
from tracer.models import Project

log = logging.getLogger(__name__)

_reader: NvmlReader | None = None
_warned: set[str] = set()


def local_host() -> str:
    return settings.OCTOTRACE_GPU_HOST_NAME or socket.gethostname()


def process_reader() -> NvmlReader:
    """This worker process's NVML reader (opened on first use)."""
    global _reader
    if _reader is None:
        _reader = NvmlReader(host=local_host())
    return _reader


def _warn_once(message: str, *args: Any) -> None:
    text = message % args
    if text not in _warned:
        _warned.add(text)
        log.warning(text)


def gpu_sample(
    *, host: str, readings: int, interval_s: float, reader: NvmlReader | None = None, project_slug: str | None = None
) -> int:
    """Read every local GPU `readings` times, `interval_s` apart, and store the samples in bulk.
    Returns the number of samples written (0 without NVML, GPU or project, said once)."""
    if host != local_host():
        _warn_once(
            "gpu.sample for host %r ran on %r: check that only that host consumes gpu.%s", host, local_host(), host
        )
        return 0
    slug = project_slug if project_slug is not None else settings.OCTOTRACE_GPU_PROJECT
    project_id = Project.objects.filter(slug=slug).values_list("pk", flat=True).first() if slug else None
    if project_id is None:
        _warn_once("GPU sampling is off: OCTOTRACE_GPU_PROJECT=%r names no project", slug)
        return 0
    reader = reader or process_reader()
    if not reader.open():
        return 0
    records: list[SampleRecord] = []
    for n in range(readings):
        if n:
            time.sleep(interval_s)
        records.extend(record_from_reading(reading, host=reader.host) for reading in reader.read())
    return samples_write(project_id=project_id, records=records)
