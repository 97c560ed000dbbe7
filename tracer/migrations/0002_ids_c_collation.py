"""On PostgreSQL, compare hex ids bytewise (COLLATE "C"): the span unique index is the hottest
write path of ingest, and locale-aware comparison of hex strings buys nothing."""

from __future__ import annotations

from django.db import migrations

COLUMNS = {
    "tracer_span": ["trace_id", "span_id", "parent_span_id"],
    "tracer_trace": ["trace_id", "root_span_id"],
}


def _collate(schema_editor, collation: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            size = 32 if column == "trace_id" else 16
            schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar({size}) COLLATE {collation}")


def forwards(apps, schema_editor) -> None:
    _collate(schema_editor, '"C"')


def backwards(apps, schema_editor) -> None:
    _collate(schema_editor, '"default"')


class Migration(migrations.Migration):
    dependencies = [("tracer", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
