"""`manage.py export` (reports/management/commands/export.py)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from reports import exports
from tests import reports_data
from tests.reports_data import T3, T4


@pytest.fixture
def loaded(project_a):
    reports_data.load(project_a)
    return project_a


def test_it_writes_the_export_to_stdout_with_the_list_filters(loaded) -> None:
    out = io.StringIO()
    call_command("export", "traces", "--project", loaded.slug, "--from", "2026-03-10T00:00:00Z", stdout=out)
    assert [r["trace_id"] for r in csv.DictReader(io.StringIO(out.getvalue()))] == [T4, T3]


def test_it_writes_a_file(loaded, tmp_path) -> None:
    target = tmp_path / "daily.csv"
    err = io.StringIO()
    call_command("export", "daily", "--project", loaded.slug, "-o", str(target), stderr=err)
    rows = list(csv.DictReader(target.open()))
    assert [(r["day"], Decimal(r["cost_usd"])) for r in rows][:1] == [("2026-03-02", Decimal("8.25"))]
    assert f"to {target}: {len(rows)} row(s) in " in err.getvalue()
    assert [p.name for p in tmp_path.iterdir()] == ["daily.csv"]


def test_an_interrupted_export_leaves_no_file_under_the_target_name(loaded, tmp_path, monkeypatch) -> None:
    target = tmp_path / "traces.csv"
    target.write_text("the previous export\n")

    def ctrl_c(rows):
        yield next(iter(rows))
        raise KeyboardInterrupt

    monkeypatch.setattr(exports, "csv_stream", lambda rows, encode=exports.csv_stream: encode(ctrl_c(rows)))
    with pytest.raises(CommandError, match="interrupted"):
        call_command("export", "traces", "--project", loaded.slug, "-o", str(target), stderr=io.StringIO())

    assert target.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["traces.csv"]


def test_it_refuses_an_unknown_project_or_bad_filter(loaded) -> None:
    with pytest.raises(CommandError, match="no project"):
        call_command("export", "spans", "--project", "nope")
    with pytest.raises(CommandError, match="status must be ok or error"):
        call_command("export", "spans", "--project", loaded.slug, "--status", "meh")
