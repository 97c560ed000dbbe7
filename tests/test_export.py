"""CSV exports (reports/exports.py): each kind's figures against tests/reports_data.py,
the formula-injection guard, and the stream (rows come out in pieces, not as one document)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from reports import exports, usage
from tests import reports_data
from tests.factories import ingest_spans, otlp_span, sid, tid
from tests.reports_data import RESEARCH, START_T3, T1, T2, T3, T4, TRIAGE
from tracer.models import Trace


@pytest.fixture
def loaded(project_a):
    reports_data.load(project_a)
    return project_a


def export(project, kind, start_ns=None, **filters) -> list[dict[str, str]]:
    traces = Trace.objects.filter(project=project, **filters)
    rows = exports.export_rows(kind=kind, project=project, traces=traces, start_ns=start_ns)
    body = b"".join(exports.csv_stream(rows)).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_the_traces_export_has_each_traces_rollups_newest_first(loaded) -> None:
    rows = export(loaded, "traces")
    assert [r["trace_id"] for r in rows] == [T4, T3, T2, T1]
    by_id = {r["trace_id"]: r for r in rows}
    assert (by_id[T1]["workflow"], by_id[T1]["status"], by_id[T1]["cost_usd"]) == (RESEARCH, "ok", "8.2500000000")
    assert by_id[T1]["input_tokens"] == "3000000" and by_id[T1]["start_time"] == "2026-03-02T10:00:00Z"
    assert by_id[T2]["status"] == "error"
    # Unpriced is an empty cell and a count, never $0.
    assert (by_id[T4]["cost_usd"], by_id[T4]["unpriced_calls"]) == ("", "1")


def test_the_spans_export_has_normalized_fields_tokens_and_costs(loaded) -> None:
    rows = export(loaded, "spans", trace_id=T1)
    assert len(rows) == 5
    writer_call = next(r for r in rows if r["span_id"] == sid(5))
    assert (writer_call["kind"], writer_call["agent"], writer_call["model"], writer_call["billed"]) == (
        "llm",
        "writer",
        reports_data.MODEL,
        "true",
    )
    assert (writer_call["cached_input_tokens"], writer_call["cost_usd"]) == ("500000", "5.2500000000")
    assert next(r for r in rows if r["span_id"] == sid(1))["billed"] == "false"


def test_the_agent_and_model_summaries_sum_billed_calls_only(loaded) -> None:
    agents = {r["agent"]: r for r in export(loaded, "agents")}
    assert (agents["writer"]["runs"], agents["writer"]["traces"]) == ("1", "1")
    assert (agents["writer"]["calls"], Decimal(agents["writer"]["cost_usd"])) == ("1", Decimal("5.25"))
    assert (agents["critic"]["calls"], Decimal(agents["critic"]["cost_usd"])) == ("2", Decimal("1.5"))
    # Calls outside any agent: T2's ($2) and T4's (unpriced).
    assert (agents[""]["calls"], Decimal(agents[""]["cost_usd"]), agents[""]["unpriced_calls"]) == ("2", 2, "1")
    models = {r["model"]: r for r in export(loaded, "models")}
    assert Decimal(models[reports_data.MODEL]["cost_usd"]) == Decimal("11.75")
    assert models[reports_data.MODEL]["input_tokens"] == "4500000"
    assert (models[reports_data.UNPRICED_MODEL]["cost_usd"], models[reports_data.UNPRICED_MODEL]["unpriced_calls"]) == (
        "",
        "1",
    )


def test_the_daily_export_sums_billed_calls_by_utc_day(loaded) -> None:
    rows = [(r["day"], r["calls"], r["traces"], r["cost_usd"], r["unpriced_calls"]) for r in export(loaded, "daily")]
    assert [(d, n, t, Decimal(c) if c else None, u) for d, n, t, c, u in rows] == [
        ("2026-03-02", "2", "1", Decimal("8.25"), "0"),
        ("2026-03-04", "1", "1", Decimal("2"), "0"),
        ("2026-03-10", "3", "2", Decimal("1.5"), "1"),
    ]


def test_the_agents_and_models_exports_have_the_pages_numbers(loaded) -> None:
    page = {r["agent"]: r for r in usage.agents_table(project=loaded, start_ns=START_T3, end_ns=None)}
    exported = {r["agent"]: r for r in export(loaded, "agents", start_ns=START_T3)}
    assert set(exported) == set(page) == {"critic", ""}
    for name, row in page.items():
        assert Decimal(exported[name]["cost_usd"] or 0) == (row["cost"] or 0)
        assert int(exported[name]["total_tokens"]) == row["total_tokens"]
    page_models = {r["model"]: r for r in usage.models_table(project=loaded, start_ns=START_T3, end_ns=None)}
    exported_models = {r["model"]: r for r in export(loaded, "models", start_ns=START_T3)}
    assert {m: int(r["calls"]) for m, r in exported_models.items()} == {m: r["calls"] for m, r in page_models.items()}


def test_the_filters_of_the_caller_apply(loaded) -> None:
    assert [r["trace_id"] for r in export(loaded, "traces", root_span_name=TRIAGE)] == [T4]
    assert {r["trace_id"] for r in export(loaded, "spans", root_span_name=TRIAGE)} == {T4}


@pytest.mark.parametrize("dangerous", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_a_cell_that_a_spreadsheet_would_evaluate_is_neutralized(project_a, dangerous) -> None:
    trace = tid(7)
    ingest_spans(project_a, otlp_span(sid(1), trace=trace, name=dangerous))
    (row,) = export(project_a, "traces")
    assert row["workflow"] == "'" + dangerous


def test_safe_values_and_numbers_are_left_alone() -> None:
    assert exports.cell_guard("plain =not at start") == "plain =not at start"
    assert exports.cell_guard(-5) == -5
    assert exports._cell(Decimal("1E-7")) == "0.0000001"
    assert exports._cell(None) == "" and exports._cell(True) == "true"


def test_the_stream_yields_pieces_of_rows_not_one_document(monkeypatch) -> None:
    monkeypatch.setattr(exports, "CHUNK", 10)
    pieces = list(exports.csv_stream([i, f"row {i}"] for i in range(25)))
    assert len(pieces) == 3
    assert b"".join(pieces).decode().splitlines()[24] == "24,row 24"


def test_an_unknown_kind_is_refused(project_a) -> None:
    with pytest.raises(exports.UnknownExport, match="use one of traces, spans, agents, models, daily"):
        exports.export_rows(kind="secrets", project=project_a, traces=Trace.objects.none())
