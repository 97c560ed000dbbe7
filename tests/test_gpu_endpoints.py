"""Endpoints and GPU prices (tracer/gpu/prices.py) and the `gpuendpoint` / `gpuattribute` commands."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from tracer.gpu.prices import PRICES_FILE, address_from_url, endpoint_upsert, gpu_default_price
from tracer.models import Endpoint, GpuDevice, GpuSample, Span, Trace


@pytest.mark.parametrize(
    ("nvml_name", "price"),
    [
        ("NVIDIA H100 80GB HBM3", Decimal("2.50")),
        ("NVIDIA H100 PCIe", Decimal("2.50")),
        ("NVIDIA H200", Decimal("3.50")),
        ("NVIDIA A100-SXM4-80GB", Decimal("1.50")),
        ("NVIDIA A100 80GB PCIe", Decimal("1.50")),
        ("NVIDIA L40S", Decimal("1.00")),
        ("NVIDIA A100-SXM4-40GB", None),
        ("Tesla T4", None),
    ],
)
def test_default_prices_follow_the_gpu_model_and_unknown_models_are_unpriced(nvml_name, price) -> None:
    assert gpu_default_price(gpu_name=nvml_name) == price


def test_every_default_price_cites_a_source() -> None:
    import json

    for row in json.loads(PRICES_FILE.read_text())["prices"]:
        assert row["source"].startswith("https://") and row["quote"]


def test_an_endpoint_is_its_host_and_port() -> None:
    assert address_from_url("http://NIM.internal:8000/v1") == ("nim.internal", 8000)
    assert address_from_url("nim.internal") == ("nim.internal", 0)
    with pytest.raises(ValueError, match="no host"):
        address_from_url("http://")


@pytest.mark.django_db
def test_mapping_an_endpoint_needs_known_gpus_and_sane_prices(project_a, project_b) -> None:
    GpuDevice.objects.create(project=project_b, host="b", uuid="GPU-b", name="NVIDIA H100")
    with pytest.raises(ValueError, match="no GPU with UUID GPU-b"):
        endpoint_upsert(project=project_a, name="n", base_url="http://nim:8000", device_uuids=["GPU-b"])
    GpuDevice.objects.create(project=project_a, host="a", uuid="GPU-a", name="NVIDIA H100")
    with pytest.raises(ValueError, match="GPU-hour price"):
        endpoint_upsert(
            project=project_a, name="n", base_url="http://nim:8000", device_uuids=["GPU-a"], gpu_hour_price=Decimal(-1)
        )
    first = endpoint_upsert(project=project_a, name="n", base_url="http://nim:8000", device_uuids=["GPU-a"])
    again = endpoint_upsert(project=project_a, name="renamed", base_url="http://nim:8000/v1", device_uuids=["GPU-a"])
    assert first.pk == again.pk and Endpoint.objects.get().name == "renamed"


@pytest.mark.django_db
def test_the_commands_map_an_endpoint_list_it_and_backfill_attribution(project_a) -> None:
    device = GpuDevice.objects.create(project=project_a, host="nim-1", uuid="GPU-c", name="NVIDIA L40S")
    t0 = 1_780_000_000 * 10**9
    GpuSample.objects.bulk_create(
        GpuSample(device=device, time_unix_nano=t0 + t * 10**9, power_mw=300_000, energy_mj=t * 300_000)
        for t in range(3)
    )
    Trace.objects.create(
        project=project_a, trace_id="f" * 32, start_time_unix_nano=t0, end_time_unix_nano=t0 + 2 * 10**9
    )
    span = Span.objects.create(
        project=project_a,
        trace_id="f" * 32,
        span_id="1" * 16,
        name="chat",
        kind="llm",
        start_time_unix_nano=t0,
        end_time_unix_nano=t0 + 2 * 10**9,
        attributes={"server.address": "nim.internal", "server.port": 8000},
    )
    out = io.StringIO()
    call_command(
        "gpuendpoint", project=project_a.slug, base_url="http://nim.internal:8000/v1", gpu=["GPU-c"], stdout=out
    )
    assert "$1.00/GPU-hour" in out.getvalue()
    out = io.StringIO()
    call_command("gpuendpoint", project=project_a.slug, stdout=out)
    assert "GPU-c  nim-1 #0  NVIDIA L40S" in out.getvalue()
    out = io.StringIO()
    call_command("gpuattribute", project=project_a.slug, since="2026-05-28T00:00", until="2026-05-29T00:00", stdout=out)
    assert "1 LLM span(s) on a mapped endpoint; 1 covered" in out.getvalue()
    span.refresh_from_db()
    assert span.gpu_seconds == pytest.approx(2.0) and span.gpu_energy_wh == pytest.approx(600 / 3600)
    with pytest.raises(CommandError, match="--gpu UUID"):
        call_command("gpuendpoint", project=project_a.slug, base_url="http://x")
