from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from tracer.pricing import CATALOG, prices_sync


class Command(BaseCommand):
    help = (
        "Load the default model price catalog (tracer/data/prices.json, or --file) into the database. "
        "Existing spans keep their cost until `manage.py reprice`."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--file", type=Path, default=CATALOG)

    def handle(self, *args, file: Path, **options) -> None:
        try:
            created, updated = prices_sync(path=file)
        except (ValueError, KeyError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Prices: {created} added, {updated} updated from {file}.")
