from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracer import ingest, otlp, synthetic
from tracer.models import Membership, Project
from tracer.projects import apikey_create, project_create

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = (
        "Create the demo user, project and ingest key (printed), and queue synthetic multi-agent "
        "traces through the normal ingest path. Does nothing to an existing demo project's data."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--traces", type=int, default=25)

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
        if fresh and traces > 0:
            body = synthetic.encode(synthetic.make_spans(traces, service_name="demo-agents"))
            ingest.batch_accept(project=project, body=body, content_type=otlp.PROTOBUF)
        self.stdout.write(f"Demo login: {username} / {password}" if created else f"Demo login: {username}")
        self.stdout.write(f"Demo project: {project.slug}")
        self.stdout.write(f"Demo ingest key (shown once): {secret}")
