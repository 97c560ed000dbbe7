from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from tracer import ingest, otlp, synthetic
from tracer.models import Membership, Project
from tracer.projects import apikey_create, project_create

DEMO_SLUG = "demo"


def example_traces(runs: int) -> bytes:
    """Run the SDK's example crew against the bundled mock NIM, traced by the SDK, and return
    its spans as one OTLP protobuf body."""
    import octotrace
    from examples.research_crew import crew

    collector = synthetic.Collector()
    octotrace.init(span_exporter=collector, fetch_prices=False, service_name="research-crew")
    try:
        crew.run(runs=runs)
    finally:
        octotrace.shutdown()
    return synthetic.encode(collector.spans)


class Command(BaseCommand):
    help = (
        "Create the demo user, project and ingest key (printed), and queue demo traces (the SDK's "
        "example crew run against the mock NIM) through the normal ingest path. Does nothing to an "
        "existing demo project's data."
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
        if fresh and traces > 0:
            ingest.batch_accept(project=project, body=example_traces(traces), content_type=otlp.PROTOBUF)
        self.stdout.write(f"Demo login: {username} / {password}" if created else f"Demo login: {username}")
        self.stdout.write(f"Demo project: {project.slug}")
        self.stdout.write(f"Demo ingest key (shown once): {secret}")
