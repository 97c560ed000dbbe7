"""Index spans by project and start time (GPU attribution without the trace lookback, time ranges).

On PostgreSQL the index is built CONCURRENTLY, so a large span table keeps taking writes while it is
built (hence a non-atomic migration); SQLite builds it in place.
"""

from django.db import migrations, models

INDEX = models.Index(fields=["project", "start_time_unix_nano"], name="span_project_start_idx")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS span_project_start_idx "
            "ON tracer_span (project_id, start_time_unix_nano)"
        )
    else:
        schema_editor.add_index(apps.get_model("tracer", "Span"), INDEX)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS span_project_start_idx")
    else:
        schema_editor.remove_index(apps.get_model("tracer", "Span"), INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tracer", "0009_message_store"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create, drop)],
            state_operations=[migrations.AddIndex(model_name="span", index=INDEX)],
        ),
    ]
