"""The demo's data: a demo user, project and ingest key, runs of the example crew against the mock
NIM queued through the normal ingest path, and SIMULATED GPU telemetry for the mock NIM."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password

import octotrace
from demo.gpu import SimulatedSampling, demo_gpu_accept, mock_nim_base_url, simulated_gpu_sampling
from demo.synthetic import Collector, encode
from examples.research_crew import crew
from tracer import ingest, otlp
from tracer.models import GpuMetricsBatch, Membership, Project
from tracer.projects import apikey_create, project_create

DEMO_SLUG = "demo"


@dataclass
class ExampleRun:
    body: bytes  # the crew's spans as one OTLP protobuf body
    base_url: str | None  # the mock NIM's base URL, as its LLM spans recorded it
    gpu: SimulatedSampling  # what the gpu-agent read from the simulated H100 meanwhile


@dataclass
class DemoSeed:
    user_created: bool  # the password was set (an existing user keeps theirs)
    project: Project
    secret: str  # a new ingest key of the demo project, shown once
    gpu_base_url: str | None = None  # the mock NIM mapped to the simulated GPU, when queued
    gpu_batches: list[GpuMetricsBatch] = field(default_factory=list)


def example_run(runs: int) -> ExampleRun:
    """Run the SDK's example crew against the mock NIM, traced by the SDK, while the SDK's
    gpu-agent samples a SIMULATED H100 (fake NVML) standing in for the NIM's GPU."""
    collector = Collector()
    octotrace.init(span_exporter=collector, fetch_prices=False, service_name="research-crew")
    try:
        with simulated_gpu_sampling() as gpu:
            crew.run(runs=runs)
    finally:
        octotrace.shutdown()
    return ExampleRun(body=encode(collector.spans), base_url=mock_nim_base_url(collector.spans), gpu=gpu)


def demo_seed(*, username: str, password: str, traces: int) -> DemoSeed:
    """Create the demo user (staff and superuser; the password is set only when it is created, and
    checked by the password validators outside local development),
    the demo project and a new key. Only a new project gets `traces` runs of the example crew and
    the simulated GPU telemetry, so running it again adds no second copy of the data."""
    users = get_user_model().objects
    if not settings.LOCAL_DEV and not users.filter(username=username).exists():
        # demo/demo is the well-known login of `make run` (README), so the validators are skipped
        # in local development only; a demo app installed anywhere else (OCTOTRACE_DEMO=1) gets a
        # password that passes them, or no user (ValidationError).
        validate_password(password, get_user_model()(username=username))
    user, created = users.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    project = Project.objects.filter(slug=DEMO_SLUG).first()
    fresh = project is None
    if fresh:
        project = project_create(name="Demo", slug=DEMO_SLUG, owner=user)
    else:
        Membership.objects.get_or_create(project=project, user=user, defaults={"role": Membership.Role.OWNER})
    _, secret = apikey_create(project=project, name="demo")
    seed = DemoSeed(user_created=created, project=project, secret=secret)
    if fresh and traces > 0:
        run = example_run(traces)
        ingest.batch_accept(project=project, body=run.body, content_type=otlp.PROTOBUF)
        if run.base_url is not None:
            seed.gpu_base_url = run.base_url
            seed.gpu_batches = demo_gpu_accept(project=project, sampling=run.gpu, base_url=run.base_url)
    return seed
