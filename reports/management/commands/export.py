"""`manage.py export <kind> --project <slug>`: the CSV exports, streamed to a file or stdout."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from reports import exports
from tracer.api import BadParameter, datetime_ns, traces_filtered
from tracer.models import Project
from tracer.progress import Progress

# The list API's filters, with the same meaning (see docs/api.md).
FILTERS = ("from", "to", "status", "min_cost", "session", "root", "q", "agent", "model")


class Command(BaseCommand):
    help = "Export traces, spans, per-agent or per-model summaries, or cost per day as CSV (streamed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("kind", choices=exports.KINDS)
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        for name in FILTERS:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"as ?{name}= in /api/v1/traces")

    def handle(self, *args, kind: str, project: str, output: str | None, **options) -> None:
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"no project with the slug {project!r}")
        params = {name: options[name] for name in FILTERS if options.get(name)}
        try:
            rows = exports.export_rows(
                kind=kind,
                project=found,
                traces=traces_filtered(project=found, params=params),
                start_ns=datetime_ns("from", params["from"]) if "from" in params else None,
                end_ns=datetime_ns("to", params["to"]) if "to" in params else None,
            )
        except BadParameter as exc:
            raise CommandError(str(exc)) from None
        if not output:
            for piece in exports.csv_stream(rows):  # whole rows per piece, so each decodes on its own
                self.stdout.write(piece.decode(), ending="")
            return
        # Written beside the target and renamed when whole, so Ctrl-C never leaves half a CSV under its name.
        partial = Path(f"{output}.partial")
        with Progress(stream=sys.stderr, unit="rows", desc=f"export {kind}") as progress:
            try:
                with partial.open("wb") as stream:
                    for piece in exports.csv_stream(progress.track(rows)):
                        stream.write(piece)
            except KeyboardInterrupt:
                progress.close()
                partial.unlink(missing_ok=True)
                raise CommandError(f"interrupted; {output} was not written") from None
        partial.replace(output)
        rows_written = max(progress.count - 1, 0)  # less the header line
        self.stderr.write(
            f"Wrote the {kind} export of {project} to {output}: {rows_written} row(s) {progress.timing()}."
        )
