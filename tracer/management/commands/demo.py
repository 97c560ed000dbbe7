from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracer import demo_gpu, ingest, otlp, synthetic
from tracer.models import Membership, Project
from tracer.projects import apikey_create, project_create

DEMO_SLUG = "demo"


@dataclass
class ExampleRun:
    body: bytes  # the crew's spans as one OTLP protobuf body
    base_url: str | None  # the mock NIM's base URL, as its LLM spans recorded it
    gpu: demo_gpu.SimulatedSampling  # what the gpu-agent read from the simulated H100 meanwhile


def example_run(runs: int) -> ExampleRun:
    """Run the SDK's example crew against the bundled mock NIM, traced by the SDK, while the SDK's
    gpu-agent samples a SIMULATED H100 (fake NVML) standing in for the NIM's GPU."""
    import octotrace
    from examples.research_crew import crew

    collector = synthetic.Collector()
    octotrace.init(span_exporter=collector, fetch_prices=False, service_name="research-crew")
    try:
        with demo_gpu.simulated_gpu_sampling() as gpu:
            crew.run(runs=runs)
    finally:
        octotrace.shutdown()
    return ExampleRun(
        body=synthetic.encode(collector.spans), base_url=demo_gpu.mock_nim_base_url(collector.spans), gpu=gpu
    )


class Command(BaseCommand):
    help = (
        "Create the demo user, project and ingest key (printed), and queue demo traces (the SDK's "
        "example crew run against the mock NIM) and SIMULATED GPU telemetry for the mock NIM (one H100 "
        "behind a fake NVML, sampled by the SDK's gpu-agent) through the normal ingest path. Does "
        "nothing to an existing demo project's data."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--traces", type=int, default=12, help="runs of the example crew")

    def handle(self, *args, username: str, password: str, traces: int, **options) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
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
        gpu_batches = []
        if fresh and traces > 0:
            run = example_run(traces)
            ingest.batch_accept(project=project, body=run.body, content_type=otlp.PROTOBUF)
            if run.base_url is not None:
                gpu_batches = demo_gpu.demo_gpu_accept(project=project, sampling=run.gpu, base_url=run.base_url)
        self.stdout.write(f"Demo login: {username} / {password}" if created else f"Demo login: {username}")
        self.stdout.write(f"Demo project: {project.slug}")
        self.stdout.write(f"Demo ingest key (shown once): {secret}")
        if gpu_batches:
            self.stdout.write(
                f"Demo GPU data is SIMULATED: a fake NVML module stands in for one H100 "
                f'("{demo_gpu.SIMULATED_NAME}", {demo_gpu.SIMULATED_UUID}) mapped to the mock NIM at '
                f"{run.base_url}; the worker attributes its GPU-seconds, Wh and dollars to the crew's "
                f"LLM calls within a minute."
            )
