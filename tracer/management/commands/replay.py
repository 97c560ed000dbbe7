from __future__ import annotations

import sys
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from tracer import ingest
from tracer.models import IngestBatch, Project
from tracer.progress import Progress


def parse_since(value: str, option: str = "--since") -> datetime:
    """An ISO date or datetime from the command line, UTC unless it names a zone."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} {value!r} is not an ISO date or datetime (e.g. 2026-11-01T12:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Reprocess stored ingest batches (e.g. after a normalization fix). Spans are upserted, so a "
        "replay never duplicates data. Batches whose raw body was purged are skipped."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", help="project slug")
        parser.add_argument("--since", help="only batches received at or after this ISO datetime (UTC)")
        parser.add_argument(
            "--status",
            action="append",
            choices=[s.value for s in IngestBatch.Status],
            help="only batches in this status (repeatable; default: all)",
        )
        parser.add_argument("--batch", action="append", type=int, help="only this batch id (repeatable)")
        parser.add_argument("--from-batch", type=int, help="start at this batch id (to resume an interrupted replay)")
        parser.add_argument("--inline", action="store_true", help="process here instead of through the worker")

    def handle(self, *args, **opts) -> None:
        project = None
        if opts["project"]:
            try:
                project = Project.objects.get(slug=opts["project"])
            except Project.DoesNotExist:
                raise CommandError(f"no project with the slug {opts['project']!r}") from None
        batches = ingest.batches_for_replay(
            project=project,
            since=parse_since(opts["since"]) if opts["since"] else None,
            statuses=opts["status"],
            batch_ids=opts["batch"],
        )
        if opts["from_batch"] is not None:
            batches = batches.filter(pk__gte=opts["from_batch"])
        spans = 0
        last = None
        # One batch per transaction (batch_process commits each), so Ctrl-C leaves every batch either
        # replayed or untouched; the message names the batch to resume from.
        with Progress(stream=sys.stderr, unit="batches", total=batches.count(), desc="replay") as progress:
            try:
                for batch_id in batches.values_list("pk", flat=True).iterator():
                    result = ingest.batch_replay(batch_id=batch_id, inline=opts["inline"])
                    spans += result.spans if result else 0
                    last = batch_id
                    progress.add()
            except KeyboardInterrupt:
                progress.close()
                resume = f" --from-batch {last + 1}" if last is not None else ""
                raise CommandError(
                    f"interrupted after {progress.count} batch(es); rerun with{resume} to resume"
                ) from None
        if opts["inline"]:
            self.stdout.write(f"Reprocessed {progress.count} batch(es), {spans} span(s) {progress.timing()}.")
        else:
            self.stdout.write(f"Re-enqueued {progress.count} batch(es) for the worker {progress.timing()}.")
