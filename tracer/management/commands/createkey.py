from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tracer.models import ApiKey, Project
from tracer.projects import apikey_create


class Command(BaseCommand):
    help = "Create another API key for a project (by slug) and print it once: ingest unless --scope read."

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project slug")
        parser.add_argument("--name", default="default", help="a label for the key")
        parser.add_argument(
            "--scope",
            choices=ApiKey.Scope.values,
            default=ApiKey.Scope.INGEST,
            help="ingest: send telemetry (/v1/traces, /v1/metrics); read: the JSON and CSV API (default: ingest)",
        )

    def handle(self, *args, project: str, name: str, scope: str, **options) -> None:
        try:
            found = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"no project with the slug {project!r}") from None
        key, secret = apikey_create(project=found, name=name, scopes=(scope,))
        self.stdout.write(f"Created {scope} key {key.prefix}… for project {found.slug}.")
        self.stdout.write(f"{scope.capitalize()} key (shown once, store it now): {secret}")
