"""`POST /v1/metrics` (tracer/views.py) and the metrics batch into GPU samples (tracer/gpu/metrics.py)."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

from tests.factories import decode_status, gzip_bomb
from tracer import batches, otlp
from tracer.celery import app as celery_app
from tracer.gpu import metrics
from tracer.models import GpuDevice, GpuMetricsBatch, GpuSample

URL = "/v1/metrics"
T0 = 1_780_000_000_000_000_000
S = 1_000_000_000


def kv(key: str, value) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=value))


def body(points: list[tuple[str, str, int, float, dict]], *, host: str = "nim-1") -> bytes:
    """(metric, unit, time, value, extra attributes) points of GPU-aaaa, as a protobuf request."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend([kv("host.name", host), kv("service.name", "collector")])
    sm = rm.scope_metrics.add()
    for name, unit, time_ns, value, extra in points:
        metric = sm.metrics.add(name=name, unit=unit)
        attrs = {"hw.id": "GPU-aaaa", "hw.name": "NVIDIA H100 80GB HBM3", "hw.gpu.index": 3, **extra}
        point = NumberDataPoint(time_unix_nano=time_ns, as_double=value)
        point.attributes.extend([kv(k, v) for k, v in attrs.items()])
        if name in ("hw.gpu.energy.consumed", "hw.energy", "hw.gpu.memory.usage"):
            metric.sum.data_points.append(point)
            metric.sum.is_monotonic = name != "hw.gpu.memory.usage"
        else:
            metric.gauge.data_points.append(point)
    return request.SerializeToString()


def one_second(t: int) -> list[tuple[str, str, int, float, dict]]:
    # A collector stamps each instrument on its own, microseconds apart: still one sample.
    return [
        ("hw.gpu.utilization", "1", t, 0.75, {"hw.gpu.task": "general"}),
        ("hw.gpu.utilization", "1", t, 0.10, {"hw.gpu.task": "encoder"}),
        ("hw.gpu.power.draw", "W", t + 3_000, 412.5, {}),
        ("hw.gpu.energy.consumed", "J", t + 5_000, 1234.567, {}),
        ("hw.gpu.memory.usage", "By", t + 7_000, 42 * 2**30, {}),
        ("hw.gpu.temperature", "Cel", t + 9_000, 66, {}),
        ("hw.gpu.clock.sm", "MHz", t + 9_000, 1755, {}),
        ("hw.gpu.memory.limit", "By", t, 80 * 2**30, {}),
    ]


def post(client: Client, data: bytes, *, secret: str | None, content_type: str = otlp.PROTOBUF, **headers):
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return client.post(URL, data=data, content_type=content_type, headers=headers)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batch ids handed to the broker for the GPU worker (the broker itself is the e2e test's business)."""
    ids: list[int] = []

    def send_task(name: str, args: list, countdown: float | None = None) -> None:
        if name == metrics.PROCESS_TASK:
            ids.extend(args)

    monkeypatch.setattr(celery_app, "send_task", send_task)
    return ids


@pytest.mark.django_db(transaction=True)
def test_it_stores_the_body_and_the_worker_makes_one_sample_per_device_and_instant(
    client: Client, project_a, key_a, captured
) -> None:
    response = post(client, body(one_second(T0) + one_second(T0 + S)), secret=key_a[1])
    assert response.status_code == 200
    assert response.content == b""  # an empty ExportMetricsServiceResponse
    batch = GpuMetricsBatch.objects.get(project=project_a)
    assert captured == [batch.pk] and batch.status == "pending"

    assert metrics.metrics_batch_process(batch_id=batch.pk) == 2
    device = GpuDevice.objects.get(project=project_a)
    assert (device.host, device.uuid, device.index, device.name) == ("nim-1", "GPU-aaaa", 3, "NVIDIA H100 80GB HBM3")
    assert device.memory_total_bytes == 80 * 2**30
    samples = list(GpuSample.objects.filter(device=device).order_by("time_unix_nano"))
    assert [s.time_unix_nano for s in samples] == [T0, T0 + S]
    first = samples[0]
    # Encoder utilization is not the GPU's: the general task's 0.75 is.
    assert (first.utilization_gpu, first.power_mw, first.energy_mj) == (75, 412_500, 1_234_567)
    assert (first.memory_used_bytes, first.temperature_c, first.sm_clock_mhz) == (42 * 2**30, 66, 1755)
    batch.refresh_from_db()
    assert (batch.status, batch.sample_count) == ("done", 2)
    # The samples are the data now: the body is not kept (it would outweigh them).
    assert bytes(batch.body) == b""


@pytest.mark.django_db(transaction=True)
def test_processing_a_batch_twice_writes_each_sample_once(client, project_a, key_a, captured) -> None:
    post(client, body(one_second(T0)), secret=key_a[1])
    batch_id = captured[0]
    metrics.metrics_batch_process(batch_id=batch_id)
    GpuMetricsBatch.objects.filter(pk=batch_id).update(status="pending")
    metrics.metrics_batch_process(batch_id=batch_id)
    assert GpuSample.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_takes_the_generic_hardware_names_only_for_gpus_and_otlp_json(client, project_a, key_a, captured) -> None:
    def point(name: str, unit: str, value: float, hw_type: str) -> dict:
        return {
            "name": name,
            "unit": unit,
            "gauge": {
                "dataPoints": [
                    {
                        "timeUnixNano": str(T0),
                        "asDouble": value,
                        "attributes": [
                            {"key": "hw.id", "value": {"stringValue": "GPU-json"}},
                            {"key": "hw.type", "value": {"stringValue": hw_type}},
                        ],
                        # Exemplar ids are hex in OTLP/JSON: they must not break the parse.
                        "exemplars": [{"traceId": "5b8efff798038103d269b633813fc60c", "asDouble": 1}],
                    }
                ]
            },
        }

    document = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "box"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            point("hw.power", "W", 300, "gpu"),
                            point("hw.power", "W", 900, "psu"),
                            point("hw.energy", "J", 10.5, "gpu"),
                        ]
                    }
                ],
            }
        ]
    }
    response = post(client, json.dumps(document).encode(), secret=key_a[1], content_type=otlp.JSON)
    assert response.status_code == 200, response.content
    assert response.json() == {}
    metrics.metrics_batch_process(batch_id=captured[0])
    sample = GpuSample.objects.get(device__uuid="GPU-json")
    assert (sample.power_mw, sample.energy_mj) == (300_000, 10_500)


@pytest.mark.django_db
def test_it_rejects_a_missing_key_with_401_and_stores_nothing(client, project_a, captured) -> None:
    response = post(client, body(one_second(T0)), secret=None)
    assert response.status_code == 401
    assert decode_status(response.content) == (16, "missing, unknown or revoked API key")
    assert not GpuMetricsBatch.objects.exists()


@pytest.mark.django_db
def test_it_rejects_a_body_that_is_not_a_metrics_request_with_400(client, key_a, captured) -> None:
    response = post(client, b"\xff\xff not protobuf", secret=key_a[1])
    assert response.status_code == 400
    code, message = decode_status(response.content)
    assert code == 3 and "ExportMetricsServiceRequest" in message
    assert not GpuMetricsBatch.objects.exists()


@pytest.mark.django_db
def test_it_rejects_other_content_types_and_encodings_with_415(client, key_a, captured) -> None:
    assert post(client, b"x", secret=key_a[1], content_type="text/plain").status_code == 415
    response = post(client, body(one_second(T0)), secret=key_a[1], **{"Content-Encoding": "br"})
    assert response.status_code == 415


@pytest.mark.django_db
def test_it_stops_a_gzip_bomb_with_413(client, key_a, settings, captured) -> None:
    settings.OCTOTRACE_MAX_BODY_BYTES = 64 * 1024
    response = post(client, gzip_bomb(1024 * 1024), secret=key_a[1], **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert not GpuMetricsBatch.objects.exists()


@pytest.mark.django_db
def test_it_accepts_gzip_and_ignores_requests_with_no_gpu_metric(client, key_a, captured) -> None:
    compressed = gzip.compress(body(one_second(T0)))
    assert post(client, compressed, secret=key_a[1], **{"Content-Encoding": "gzip"}).status_code == 200
    assert GpuMetricsBatch.objects.count() == 1
    other = body([("process.cpu.time", "s", T0, 1.0, {})])
    assert post(client, other, secret=key_a[1]).status_code == 200
    assert GpuMetricsBatch.objects.count() == 1


@pytest.mark.django_db
def test_points_without_a_device_id_are_counted_not_stored(project_a) -> None:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="hw.gpu.power.draw", unit="W")
    metric.gauge.data_points.append(NumberDataPoint(time_unix_nano=T0, as_double=100))
    decoded = metrics.samples_from_request(request)
    assert (decoded.points, decoded.skipped, decoded.samples) == (1, 1, [])


@pytest.mark.django_db
def test_stuck_batches_are_requeued_and_old_done_ones_pruned(project_a, captured, settings) -> None:
    now = timezone.now()
    old = now - timedelta(hours=settings.OCTOTRACE_RAW_RETENTION_HOURS + 1)

    def create(**fields) -> GpuMetricsBatch:
        return GpuMetricsBatch.objects.create(project=project_a, body=b"", content_type=otlp.PROTOBUF, **fields)

    stuck = create(enqueued_at=old)
    # Its worker died long ago; the other one's worker claimed it a moment ago, though its message is old.
    dead = create(status="processing", enqueued_at=old, started_at=old)
    busy = create(status="processing", enqueued_at=old, started_at=now)
    create(status="done", received_at=old)
    recent = create(status="done")
    assert batches.batches_requeue_stuck(kind=metrics.BATCHES, now=now) == 2
    assert sorted(captured) == [stuck.pk, dead.pk]
    assert batches.batches_purge(kind=metrics.BATCHES, now=now) == 1
    assert set(GpuMetricsBatch.objects.values_list("pk", flat=True)) == {stuck.pk, dead.pk, busy.pk, recent.pk}


@pytest.mark.django_db
def test_a_batch_claimed_too_often_is_given_up_and_keeps_its_body(project_a, settings) -> None:
    data = body(one_second(T0))
    batch = GpuMetricsBatch.objects.create(
        project=project_a, body=data, content_type=otlp.PROTOBUF, attempts=settings.OCTOTRACE_BATCH_MAX_ATTEMPTS
    )

    assert metrics.metrics_batch_process(batch_id=batch.pk) is None

    batch.refresh_from_db()
    assert (batch.status, batch.error) == ("failed", f"gave up after {settings.OCTOTRACE_BATCH_MAX_ATTEMPTS} attempts")
    assert bytes(batch.body) == data
    assert not GpuSample.objects.exists()
