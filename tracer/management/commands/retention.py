from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from tracer.models import Project
from tracer.progress import Progress
from tracer.retention import RetentionResult, retention_apply, retention_horizon


class Command(BaseCommand):
    help = (
        "Delete data past each project's retention now (beat does it daily): whole traces that ended "
        "before the horizon with their spans, stored batches, GPU samples. A chunk per transaction: "
        "Ctrl-C keeps what was done, and a rerun goes on."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", help="project slug (default: every project)")
        parser.add_argument("--chunk", type=int, default=1000, help="rows per transaction (default 1000)")

    def handle(self, *args, project: str | None, chunk: int, **options) -> None:
        if chunk < 1:
            raise CommandError("--chunk must be at least 1")
        projects = Project.objects.order_by("pk")
        if project:
            projects = projects.filter(slug=project)
            if not projects.exists():
                raise CommandError(f"no project with the slug {project!r}")
        for target in projects:
            horizon = retention_horizon(project=target)
            with Progress(stream=sys.stderr, unit="steps", desc=f"retention {target.slug}") as progress:
                seen = {"steps": 0}

                def step(result: RetentionResult, progress: Progress = progress, seen: dict = seen) -> None:
                    progress.add(result.steps - seen["steps"])
                    seen["steps"] = result.steps

                try:
                    result = retention_apply(project_id=target.pk, chunk=chunk, on_step=step)
                except KeyboardInterrupt:
                    progress.close()
                    raise CommandError("interrupted; the chunks done are committed, rerun to go on") from None
            self.stdout.write(
                f"{target.slug}: kept {target.retention_days_effective} days (since {horizon:%Y-%m-%d %H:%M} UTC); "
                f"deleted {result.traces} trace(s), {result.spans} span(s), {result.batches} batch(es), "
                f"{result.gpu_samples} GPU sample(s), {result.gpu_minutes} GPU minute(s) {progress.timing()}."
            )
