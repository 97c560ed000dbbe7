from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from demo.gpu import SIMULATED_NAME, SIMULATED_UUID
from demo.seed import demo_seed


class Command(BaseCommand):
    help = (
        "Create the demo user, project and ingest key (printed), and queue demo traces (the SDK's "
        "example crew run against the mock NIM) and SIMULATED GPU telemetry for the mock NIM (one H100 "
        "behind a fake NVML, sampled by the SDK's gpu-agent) through the normal ingest path. Does "
        "nothing to an existing demo project's data. Local development only (the demo app)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--traces", type=int, default=12, help="runs of the example crew")

    def handle(self, *args, username: str, password: str, traces: int, **options) -> None:
        try:
            seed = demo_seed(username=username, password=password, traces=traces)
        except ValidationError as exc:
            raise CommandError(f"--password: {' '.join(exc.messages)}") from None
        self.stdout.write(f"Demo login: {username} / {password}" if seed.user_created else f"Demo login: {username}")
        self.stdout.write(f"Demo project: {seed.project.slug}")
        self.stdout.write(f"Demo ingest key (shown once): {seed.secret}")
        if seed.gpu_batches:
            self.stdout.write(
                f"Demo GPU data is SIMULATED: a fake NVML module stands in for one H100 "
                f'("{SIMULATED_NAME}", {SIMULATED_UUID}) mapped to the mock NIM at '
                f"{seed.gpu_base_url}; the worker attributes its GPU-seconds, Wh and dollars to the crew's "
                f"LLM calls within a minute."
            )
