from __future__ import annotations

import math
import sys
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tracer.gpu.attribution import gpu_attribute
from tracer.gpu.intervals import NS
from tracer.management.commands.replay import parse_since
from tracer.models import Project
from tracer.progress import Progress


class Command(BaseCommand):
    help = (
        "Recompute the GPU attribution of a project's LLM spans over a time range (after mapping an "
        "endpoint, or for spans older than the periodic task's window), one hour at a time."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--since", required=True, help="ISO date or time (UTC unless it says otherwise)")
        parser.add_argument("--until", help="ISO date or time (default: now)")

    def handle(self, *args, project: str, since: str, until: str | None, **options) -> None:
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"no project with the slug {project!r}") from None
        start = parse_since(since)
        end = parse_since(until, "--until") if until else timezone.now()
        if start >= end:
            raise CommandError("--since must be before --until")
        spans = attributed = 0
        hours = math.ceil((end - start) / timedelta(hours=1))
        # One hour per transaction (gpu_attribute commits each): Ctrl-C keeps the hours done.
        with Progress(stream=sys.stderr, unit="hours", total=hours, desc="gpuattribute") as progress:
            try:
                while start < end:
                    stop = min(start + timedelta(hours=1), end)
                    result = gpu_attribute(
                        project_id=target.pk, start_ns=int(start.timestamp() * NS), end_ns=int(stop.timestamp() * NS)
                    )
                    spans += result.spans
                    attributed += result.attributed
                    start = stop
                    progress.add()
            except KeyboardInterrupt:
                progress.close()
                raise CommandError(
                    f"interrupted; hours before {start.isoformat()} are done: rerun with --since {start.isoformat()}"
                ) from None
        self.stdout.write(
            f"{spans} LLM span(s) on a mapped endpoint; {attributed} covered by GPU samples {progress.timing()}."
        )
