"""The reports' pages and downloads (dashboard/report_views.py) through Django's test client:
tenancy, roles, the same numbers as the pages."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from reports import budgets, runs
from reports.models import Budget, ReportRun, WorkflowValue
from tests import reports_data
from tests.reports_data import RESEARCH, T1, csv_rows
from tracer.models import Trace

ALL = "range=all"
MONDAY_NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)  # T1's day


@pytest.fixture
def loaded(project_a):
    reports_data.load(project_a)
    return project_a


def test_report_pages_and_exports_are_404_for_a_non_member(client, loaded, charlie) -> None:
    client.force_login(charlie)
    for path in ("reports/", "reports/waste/", "reports/whatif/", "reports/budgets/", "export/traces.csv"):
        assert client.get(f"/p/{loaded.slug}/{path}").status_code == 404


def test_the_traces_csv_has_the_traces_pages_filters(client, loaded, bob) -> None:
    client.force_login(bob)
    got = csv_rows(client.get(f"/p/{loaded.slug}/export/traces.csv?{ALL}&status=error"))
    assert [r["trace_id"] for r in got] == [reports_data.T2]
    page = client.get(f"/p/{loaded.slug}/traces/?{ALL}&status=error")
    assert [t.trace_id for t in page.context["listing"].page.object_list] == [reports_data.T2]


def test_the_agents_csv_has_the_agents_pages_numbers(client, loaded, bob) -> None:
    client.force_login(bob)
    page = {r["agent"]: r for r in client.get(f"/p/{loaded.slug}/agents/?{ALL}").context["rows"]}
    exported = {r["agent"]: r for r in csv_rows(client.get(f"/p/{loaded.slug}/export/agents.csv?{ALL}"))}
    assert set(page) == set(exported)
    for name, row in page.items():
        assert Decimal(exported[name]["cost_usd"] or 0) == (row["cost"] or 0)
        assert int(exported[name]["calls"]) == row["calls"]


def test_the_list_pages_have_csv_buttons(client, loaded, bob) -> None:
    client.force_login(bob)
    for page, kind in (("traces/", "traces"), ("agents/", "agents"), ("models/", "models"), ("", "daily")):
        body = client.get(f"/p/{loaded.slug}/{page}?{ALL}").content.decode()
        assert f'data-csv="{kind}" href="/p/{loaded.slug}/export/{kind}.csv?range=all"' in body


def test_an_unknown_export_or_bad_filter_is_400_with_the_reason(client, loaded, bob) -> None:
    client.force_login(bob)
    response = client.get(f"/p/{loaded.slug}/export/passwords.csv")
    assert response.status_code == 400 and b"use one of traces" in response.content
    assert client.get(f"/p/{loaded.slug}/export/agents.csv?sort=nonsense").status_code == 400


def test_running_the_roi_report_shows_progress_then_the_result_and_its_csv(
    client, loaded, bob, django_capture_on_commit_callbacks
) -> None:
    client.force_login(bob)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(f"/p/{loaded.slug}/reports/roi/run?{ALL}")
    run = ReportRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/p/{loaded.slug}/reports/roi/{run.pk}/"
    pending = client.get(response["Location"])
    assert pending["Refresh"] == "1" and b'data-report-status="pending"' in pending.content
    assert client.get(f"/p/{loaded.slug}/reports/roi/{run.pk}.csv").status_code == 404
    runs.report_run_execute(run_id=run.pk)  # what the worker does (the browser test uses a real one)
    done = client.get(response["Location"])
    assert not done.has_header("Refresh") and b'data-report-status="done"' in done.content
    table = {r["workflow"]: r for r in done.context["result"]["workflows"]}
    assert Decimal(table[RESEARCH]["api_cost_usd"]) == Decimal("11.75")
    exported = csv_rows(client.get(f"/p/{loaded.slug}/reports/roi/{run.pk}.csv"))
    assert exported[0]["workflow"] == RESEARCH and Decimal(exported[0]["api_cost_usd"]) == Decimal("11.75")


def test_another_projects_report_run_is_404(client, loaded, project_b, bob) -> None:
    run = ReportRun.objects.create(project=project_b, kind=ReportRun.Kind.ROI, status="done", result={})
    client.force_login(bob)
    assert client.get(f"/p/{loaded.slug}/reports/roi/{run.pk}/").status_code == 404


def test_a_member_sets_a_workflow_value_and_a_bad_one_is_400(client, loaded, bob) -> None:
    client.force_login(bob)
    url = f"/p/{loaded.slug}/reports/roi/values?{ALL}"
    assert client.post(url, {"workflow": RESEARCH, "value_usd": "12.5"}).status_code == 302
    assert WorkflowValue.objects.get().value_usd == Decimal("12.5")
    assert client.post(url, {"workflow": RESEARCH, "value_usd": "lots"}).status_code == 400
    assert client.post(url, {"workflow": RESEARCH, "value_usd": "-1"}).status_code == 400
    assert WorkflowValue.objects.get().value_usd == Decimal("12.5")
    assert client.post(url, {"workflow": RESEARCH, "value_usd": ""}).status_code == 302
    assert not WorkflowValue.objects.exists()


def test_the_waste_page_explains_and_shows_the_figures(client, loaded, bob) -> None:
    client.force_login(bob)
    response = client.get(f"/p/{loaded.slug}/reports/waste/?trace={T1}")
    assert response.status_code == 200
    assert response.context["result"]["totals"]["resent_tokens"] == 1_000_000
    assert b"How these figures are computed" in response.content
    assert b'data-figure="fig-growth"' in response.content


def test_the_whatif_page_compares_and_changes_nothing(client, loaded, bob) -> None:
    client.force_login(bob)
    before = list(Trace.objects.values_list("cost", flat=True))
    response = client.get(f"/p/{loaded.slug}/reports/whatif/?{ALL}&input_price=1&output_price=2&trace={T1}")
    assert response.status_code == 200
    assert Decimal(response.context["result"]["totals"]["whatif_usd"]) == Decimal("3.6")
    assert list(Trace.objects.values_list("cost", flat=True)) == before
    bad = client.get(f"/p/{loaded.slug}/reports/whatif/?{ALL}&input_price=x&output_price=1")
    assert bad.status_code == 400 and b"not a number" in bad.content


def test_only_an_owner_sets_budgets(client, loaded, alice, bob) -> None:
    client.force_login(bob)
    assert (
        client.post(f"/p/{loaded.slug}/reports/budgets/save", {"period": "daily", "amount_usd": "5"}).status_code == 403
    )
    client.force_login(alice)
    assert (
        client.post(f"/p/{loaded.slug}/reports/budgets/save", {"period": "daily", "amount_usd": "5"}).status_code == 302
    )
    bad = client.post(f"/p/{loaded.slug}/reports/budgets/save", {"period": "daily", "amount_usd": "0"})
    assert bad.status_code == 400 and b"more than $0" in bad.content
    assert Budget.objects.get().amount_usd == Decimal("5")
    assert client.post(f"/p/{loaded.slug}/reports/budgets/delete", {"period": "daily"}).status_code == 302
    assert not Budget.objects.exists()


def test_the_banner_shows_on_project_pages_once_a_threshold_is_reached(client, loaded, bob, monkeypatch) -> None:
    monkeypatch.setattr("reports.common.utc_now", lambda: MONDAY_NOON)  # the reports' clock: T1's day
    budgets.budget_set(project=loaded, period="daily", amount_usd="1")
    client.force_login(bob)
    assert b"data-budget-banner" not in client.get(f"/p/{loaded.slug}/?{ALL}").content
    budgets.budget_check_project(project_id=loaded.pk)  # $8.25 spent on T1's day
    body = client.get(f"/p/{loaded.slug}/?{ALL}").content.decode()
    assert "data-budget-banner" in body and "Over the daily budget of $1.00" in body
