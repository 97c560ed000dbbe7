"""Load the shipped price catalog, so a new installation prices spans from its first batch.
Later catalog updates are applied with `manage.py syncprices`."""

from __future__ import annotations

from django.db import migrations


def load(apps, schema_editor) -> None:
    from tracer.pricing import prices_sync

    prices_sync(model=apps.get_model("tracer", "ModelPrice"))


class Migration(migrations.Migration):
    dependencies = [("tracer", "0003_normalized_and_prices")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
