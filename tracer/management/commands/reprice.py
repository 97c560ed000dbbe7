from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from tracer.management.commands.replay import parse_since
from tracer.models import Project
from tracer.pricing import spans_priced, spans_reprice
from tracer.progress import Progress


class Command(BaseCommand):
    help = (
        "Recompute span costs with the current prices (after a price change), and their trace totals. "
        "Commits a chunk of spans at a time: Ctrl-C keeps what was done, and a rerun resumes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", help="project slug (default: every project)")
        parser.add_argument("--since", help="only spans that started at or after this ISO datetime (UTC)")

    def handle(self, *args, project: str | None, since: str | None, **options) -> None:
        project_id = None
        if project:
            found = Project.objects.filter(slug=project).first()
            if found is None:
                raise CommandError(f"no project with the slug {project!r}")
            project_id = found.pk
        since_ns = int(parse_since(since).timestamp() * 1_000_000_000) if since else None
        total = spans_priced(project_id=project_id, since_unix_nano=since_ns).count()
        with Progress(stream=sys.stderr, unit="spans", total=total, desc="reprice") as progress:
            try:
                changed, traces = spans_reprice(project_id=project_id, since_unix_nano=since_ns, on_chunk=progress.add)
            except KeyboardInterrupt:
                progress.close()
                raise CommandError(
                    f"interrupted after {progress.count} span(s); the chunks done are committed, rerun to finish"
                ) from None
        self.stdout.write(
            f"Repriced {changed} span(s) whose cost changed; recomputed {traces} trace(s) {progress.timing()}."
        )
