from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError
from django.utils.text import slugify

from tracer.projects import apikey_create, project_create


class Command(BaseCommand):
    help = "Create a project and print its first ingest key (shown once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug", default="", help="URL name (default: from the name)")
        parser.add_argument("--owner", default="", help="username of an existing user to make owner")

    def handle(self, *args, name: str, slug: str, owner: str, **options) -> None:
        slug = slug or slugify(name)
        owner_user = None
        if owner:
            try:
                owner_user = get_user_model().objects.get(username=owner)
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user named {owner!r}") from None
        try:
            project = project_create(name=name, slug=slug, owner=owner_user)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except IntegrityError:
            raise CommandError(f"a project with the slug {slug!r} already exists") from None
        _, secret = apikey_create(project=project)
        self.stdout.write(f"Created project {project.name!r} (slug {project.slug}).")
        self.stdout.write(f"Ingest key (shown once, store it now): {secret}")
