"""ROI per workflow (reports/roi.py) against figures computed by hand from
tests/reports_data.py, and the background run (reports/runs.py) called directly."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reports import roi, runs
from reports.models import ReportRun, WorkflowValue
from tests import reports_data
from tests.factories import ingest_spans, otlp_span, sid, tid
from tests.reports_data import RESEARCH, START_T2, START_T3, TRIAGE, workflow_root
from tracer.models import Span, Trace


@pytest.fixture
def loaded(project_a):
    reports_data.load(project_a)
    roi.workflow_value_set(project=project_a, workflow=RESEARCH, value_usd=Decimal("10"))
    return project_a


def report(project, **filters):
    return roi.roi_compute(project=project, traces=Trace.objects.filter(project=project, **filters))


def by_name(result):
    return {row["workflow"]: row for row in result["workflows"]}


def test_it_counts_runs_successes_tokens_and_cost_per_workflow(loaded) -> None:
    research = by_name(report(loaded))[RESEARCH]
    # T1 ok; T2 failed; T3 ended ok but its workflow said octotrace.success = false.
    assert (research["runs"], research["successful_runs"], research["success_rate"]) == (3, 1, "0.3333")
    assert research["input_tokens"] == 1_000_000 + 2_000_000 + 1_000_000 + 500_000
    assert research["output_tokens"] == 100_000 + 200_000 + 0 + 50_000
    assert Decimal(research["api_cost_usd"]) == Decimal("11.75")  # 8.25 + 2 + 1.50
    assert Decimal(research["cost_per_successful_run_usd"]) == Decimal("11.75")


def test_it_values_successful_runs_and_computes_net_value_and_roi(loaded) -> None:
    research = by_name(report(loaded))[RESEARCH]
    assert Decimal(research["value_per_successful_run_usd"]) == Decimal("10")
    assert Decimal(research["value_usd"]) == Decimal("10")
    assert Decimal(research["net_value_usd"]) == Decimal("-1.75")
    assert Decimal(research["roi_percent"]) == Decimal("-14.89")  # -1.75 / 11.75


def test_an_unpriced_workflow_has_no_cost_and_says_how_many_runs_are_unpriced(loaded) -> None:
    triage = by_name(report(loaded))[TRIAGE]
    assert (triage["runs"], triage["successful_runs"], triage["unpriced_runs"]) == (1, 1, 1)
    assert triage["api_cost_usd"] is None and triage["cost_per_successful_run_usd"] is None
    # No value entered: no value, net value or ROI rather than zeros.
    assert triage["value_usd"] is None and triage["roi_percent"] is None


def test_totals_add_the_workflows_and_value_only_those_with_a_value(loaded) -> None:
    totals = report(loaded)["totals"]
    assert (totals["runs"], totals["successful_runs"]) == (4, 2)
    assert Decimal(totals["api_cost_usd"]) == Decimal("11.75")
    assert Decimal(totals["net_value_usd"]) == Decimal("-1.75")


def test_it_gives_the_trend_by_iso_week(loaded) -> None:
    weeks = [
        (w["workflow"], w["week"], w["runs"], w["successful_runs"], w["api_cost_usd"]) for w in report(loaded)["weeks"]
    ]
    assert [(n, wk, r, s, Decimal(c) if c else None) for n, wk, r, s, c in weeks] == [
        (RESEARCH, "2026-03-02", 2, 1, Decimal("10.25")),
        (RESEARCH, "2026-03-09", 1, 0, Decimal("1.5")),
        (TRIAGE, "2026-03-09", 1, 1, None),
    ]


def test_a_success_attribute_of_true_makes_a_failed_run_successful(loaded) -> None:
    trace = tid(9)
    ingest_spans(
        loaded,
        workflow_root(trace, RESEARCH, START_T2 + 1, **{"octotrace.success": True}),
        otlp_span(sid(2), sid(1), trace=trace, start=START_T2 + 2, error=True),
    )
    assert Trace.objects.get(trace_id=trace).status == "error"
    research = by_name(report(loaded))[RESEARCH]
    assert (research["runs"], research["successful_runs"]) == (4, 2)


def test_it_reads_the_success_flag_as_a_boolean_or_its_name_only() -> None:
    assert roi.success_flag({"octotrace.success": True}) is True
    assert roi.success_flag({"octotrace.success": "False"}) is False
    assert roi.success_flag({"octotrace.success": 1}) is None
    assert roi.success_flag({}) is None


def test_the_period_filter_limits_the_runs(loaded) -> None:
    result = report(loaded, start_time_unix_nano__gte=START_T3)
    assert by_name(result)[RESEARCH]["runs"] == 1
    assert Decimal(by_name(result)[RESEARCH]["api_cost_usd"]) == Decimal("1.5")


def test_the_csv_has_a_row_per_workflow_the_totals_and_each_week(loaded) -> None:
    rows = list(roi.roi_csv_rows(result=report(loaded)))
    assert rows[0][:3] == ["period", "workflow", "runs"]
    assert [r[:2] for r in rows[1:]] == [
        ["all", RESEARCH],
        ["all", TRIAGE],
        ["all", "all workflows"],
        ["week of 2026-03-02", RESEARCH],
        ["week of 2026-03-09", RESEARCH],
        ["week of 2026-03-09", TRIAGE],
    ]


def test_a_workflow_value_is_stored_once_per_workflow_and_must_not_be_negative(project_a) -> None:
    roi.workflow_value_set(project=project_a, workflow=RESEARCH, value_usd=Decimal("3"))
    roi.workflow_value_set(project=project_a, workflow=RESEARCH, value_usd=Decimal("4.5"))
    assert list(WorkflowValue.objects.values_list("workflow", "value_usd")) == [(RESEARCH, Decimal("4.5"))]
    with pytest.raises(ValueError):
        roi.workflow_value_set(project=project_a, workflow=RESEARCH, value_usd=Decimal("-1"))


def test_a_report_run_stores_its_result_and_progress(loaded, alice, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = runs.roi_report_start(project=loaded, start_ns=None, end_ns=None, label="all", user=alice)
    assert len(callbacks) == 1  # the task is enqueued only once the row is committed
    assert runs.report_run_execute(run_id=run.pk) is True
    run.refresh_from_db()
    assert (run.status, run.progress) == (ReportRun.Status.DONE, 100)
    assert by_name(run.result)[RESEARCH]["successful_runs"] == 1
    # A second delivery of the same task does not compute it again.
    assert runs.report_run_execute(run_id=run.pk) is False


def test_the_csv_keeps_negative_figures_numeric(loaded) -> None:
    rows = list(roi.roi_csv_rows(result=report(loaded)))
    research = rows[1]
    assert research[roi.ROI_COLUMNS.index("roi_percent") + 1] == Decimal("-14.89")
    assert research[roi.ROI_COLUMNS.index("workflow") + 1] == RESEARCH


def test_gpu_cost_is_added_to_the_api_cost_when_gpu_telemetry_attributed_some(loaded) -> None:
    Trace.objects.filter(trace_id=reports_data.T1).update(gpu_cost=Decimal("0.75"))
    research = by_name(report(loaded))[RESEARCH]
    assert Decimal(research["gpu_cost_usd"]) == Decimal("0.75")
    assert Decimal(research["cost_usd"]) == Decimal("12.50")  # 11.75 API + 0.75 GPU
    assert Decimal(research["net_value_usd"]) == Decimal("-2.50")
    assert Decimal(research["roi_percent"]) == Decimal("-20.00")


def test_a_call_our_own_gpus_served_counts_its_gpu_cost_not_also_its_api_price(loaded) -> None:
    # T1's planner call ($3.00 at the API price) ran on a mapped self-hosted endpoint: GPU
    # attribution gave it $0.40 of GPU time (on the billed span and in the trace's rollup).
    planner = Span.objects.get(project=loaded, trace_id=reports_data.T1, billed=True, agent_name="planner")
    Span.objects.filter(pk=planner.pk).update(gpu_cost=Decimal("0.40"))
    Trace.objects.filter(project=loaded, trace_id=reports_data.T1).update(gpu_cost=Decimal("0.40"))
    research = by_name(report(loaded))[RESEARCH]
    # API: 11.75 - 3.00 (served by our GPUs) = 8.75; GPU 0.40; cost 9.15, never 11.75 + 0.40.
    assert Decimal(research["api_cost_usd"]) == Decimal("8.75")
    assert Decimal(research["gpu_cost_usd"]) == Decimal("0.40")
    assert Decimal(research["cost_usd"]) == Decimal("9.15")
