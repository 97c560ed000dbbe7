"""API key scopes and per-project rate-limit overrides (issue 15).

Keys that exist before this migration keep both scopes ("legacy: ingest + read"): nothing that
works today stops working. Keys created afterwards hold the ingest scope unless asked otherwise.
"""

from django.db import migrations, models


def _rate_field() -> models.PositiveIntegerField:
    return models.PositiveIntegerField(null=True, blank=True)


class Migration(migrations.Migration):
    dependencies = [
        ("tracer", "0006_stored_batch"),
    ]

    operations = [
        migrations.AddField(model_name="apikey", name="scope_ingest", field=models.BooleanField(default=True)),
        # Existing rows get True (both scopes); the default for new rows is then False.
        migrations.AddField(model_name="apikey", name="scope_read", field=models.BooleanField(default=True)),
        migrations.AlterField(model_name="apikey", name="scope_read", field=models.BooleanField(default=False)),
        migrations.AddField(model_name="project", name="rate_ingest_rps", field=_rate_field()),
        migrations.AddField(model_name="project", name="rate_ingest_spans_per_s", field=_rate_field()),
        migrations.AddField(model_name="project", name="rate_read_per_min", field=_rate_field()),
        migrations.AddField(model_name="project", name="rate_key_ingest_rps", field=_rate_field()),
        migrations.AddField(model_name="project", name="rate_key_ingest_spans_per_s", field=_rate_field()),
        migrations.AddField(model_name="project", name="rate_key_read_per_min", field=_rate_field()),
    ]
