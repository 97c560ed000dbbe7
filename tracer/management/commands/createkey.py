from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tracer.models import Project
from tracer.projects import apikey_create


class Command(BaseCommand):
    help = "Create another ingest key for a project (by slug) and print it once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("project", help="project slug")
        parser.add_argument("--name", default="default", help="a label for the key")

    def handle(self, *args, project: str, name: str, **options) -> None:
        try:
            found = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"no project with the slug {project!r}") from None
        key, secret = apikey_create(project=found, name=name)
        self.stdout.write(f"Created key {key.prefix}… for project {found.slug}.")
        self.stdout.write(f"Ingest key (shown once, store it now): {secret}")
