"""Load the shipped price catalog, so a new installation prices spans from its first batch.
Later catalog updates are applied with `manage.py syncprices`."""

from __future__ import annotations

from django.db import migrations

from tracer.pricing import prices_sync


def load(apps, schema_editor) -> None:
    prices_sync(model=apps.get_model("tracer", "ModelPrice"))


class Migration(migrations.Migration):
    dependencies = [("tracer", "0003_normalized_and_prices")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
