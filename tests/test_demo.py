"""The demo app: `manage.py demo` (what `make run` shows a new user), and the switch that installs
the app only in local development or when asked for (config/settings.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from tests.factories import ROOT
from tracer import ingest
from tracer.gpu.metrics import metrics_batch_process
from tracer.models import (
    ApiKey,
    Endpoint,
    GpuDevice,
    GpuMetricsBatch,
    GpuSample,
    IngestBatch,
    Membership,
    Project,
    Span,
    Trace,
)
from tracer.projects import apikey_authenticate

KEY_RE = re.compile(r"otk_[A-Za-z0-9_-]{20,}")


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def printed_key(output: str) -> str:
    (secret,) = KEY_RE.findall(output)
    return secret


# --- installed only in local development or on request --------------------------------------


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`manage.py ARGS` in a fresh process, with neither OCTOTRACE_LOCAL_DEV nor OCTOTRACE_DEMO
    unless given, as a production server starts."""
    environ = {k: v for k, v in os.environ.items() if k not in {"OCTOTRACE_LOCAL_DEV", "OCTOTRACE_DEMO"}}
    environ.update(OCTOTRACE_VAR_DIR=str(tmp_path / "var"), SECRET_KEY="test-not-the-default-key", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


def commands(tmp_path: Path, **env: str) -> list[str]:
    listed = manage(tmp_path, "help", "--commands", **env)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def test_a_production_server_has_no_demo_command(tmp_path: Path) -> None:
    listed = commands(tmp_path)
    assert "createproject" in listed and "demo" not in listed
    attempt = manage(tmp_path, "demo")
    assert attempt.returncode != 0 and "Unknown command: 'demo'" in attempt.stderr


@pytest.mark.parametrize(
    "env",
    [{"OCTOTRACE_LOCAL_DEV": "1"}, {"OCTOTRACE_DEMO": "1"}],
    ids=["local-development", "asked-for"],
)
def test_local_development_or_the_setting_installs_the_demo(tmp_path: Path, env: dict[str, str]) -> None:
    assert "demo" in commands(tmp_path, **env)


def test_local_development_can_leave_the_demo_out(tmp_path: Path) -> None:
    assert "demo" not in commands(tmp_path, OCTOTRACE_LOCAL_DEV="1", OCTOTRACE_DEMO="0")


# --- manage.py demo --------------------------------------------------------------------------


def test_demo_creates_a_user_a_project_a_key_and_a_pending_batch(db) -> None:
    output = run("demo")

    user = User.objects.get(username="demo")
    assert user.check_password("demo")
    assert user.is_staff and user.is_superuser
    project = Project.objects.get(slug="demo")
    assert Membership.objects.get(project=project, user=user).role == Membership.Role.OWNER
    key = apikey_authenticate(secret=printed_key(output))
    assert key is not None and key.project == project
    (batch,) = IngestBatch.objects.filter(project=project)
    assert batch.status == IngestBatch.Status.PENDING
    # 12 runs of the example crew, 15 spans each (see examples/research_crew/crew.py).
    assert batch.span_count == 12 * 15

    ingest.batch_process(batch_id=batch.pk)

    batch.refresh_from_db()
    assert (batch.status, batch.trace_count) == (IngestBatch.Status.DONE, 12)
    assert Span.objects.filter(project=project).count() == 180
    assert set(Trace.objects.filter(project=project).values_list("span_count", flat=True)) == {15}
    assert set(Trace.objects.filter(project=project).values_list("root_span_name", flat=True)) == {
        "invoke_workflow research_report"
    }


def test_demo_queues_simulated_gpu_telemetry_for_the_mock_nim(db) -> None:
    output = run("demo")

    assert "Demo GPU data is SIMULATED" in output and "fake NVML" in output
    project = Project.objects.get(slug="demo")
    # One simulated H100, mapped to the address the crew's LLM calls went to.
    (device,) = GpuDevice.objects.filter(project=project)
    assert "simulated" in device.uuid and device.name == "NVIDIA H100 80GB HBM3 (simulated)"
    (endpoint,) = Endpoint.objects.filter(project=project)
    assert list(endpoint.devices.all()) == [device]
    assert endpoint.server_address == "127.0.0.1" and endpoint.server_port > 0
    assert f":{endpoint.server_port}/v1" in output
    # Its samples wait as metrics batches for the GPU worker, like a gpu-agent's exports.
    batches = list(GpuMetricsBatch.objects.filter(project=project))
    assert batches and all(b.status == GpuMetricsBatch.Status.PENDING for b in batches)
    assert not GpuSample.objects.exists()

    for batch in batches:
        metrics_batch_process(batch_id=batch.pk)

    samples = GpuSample.objects.filter(device=device)
    assert samples.count() >= 10  # readings 0.1 s apart over the crew's run and a second of idle
    assert samples.filter(utilization_gpu__gte=70).exists() and samples.filter(utilization_gpu__lte=3).exists()


def test_demo_can_run_twice(db) -> None:
    first = run("demo")
    gpu_batches = GpuMetricsBatch.objects.count()
    second = run("demo")

    assert "Demo login: demo / demo" in first
    assert "Demo login: demo" in second
    assert Project.objects.filter(slug="demo").count() == 1
    assert User.objects.filter(username="demo").count() == 1
    # No second copy of the demo data, but a fresh key each time.
    assert IngestBatch.objects.count() == 1
    assert GpuMetricsBatch.objects.count() == gpu_batches and GpuDevice.objects.count() == 1
    assert ApiKey.objects.filter(project__slug="demo").count() == 2
    assert apikey_authenticate(secret=printed_key(second)) is not None
