from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tracer.management.commands.replay import parse_since
from tracer.models import Project
from tracer.pricing import spans_reprice


class Command(BaseCommand):
    help = "Recompute span costs with the current prices (after a price change), and their trace totals."

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
        spans, traces = spans_reprice(project_id=project_id, since_unix_nano=since_ns)
        self.stdout.write(f"Repriced {spans} span(s) whose cost changed; recomputed {traces} trace(s).")
