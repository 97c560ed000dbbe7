"""The ROI report in a real browser: run it, watch it finish on a real Celery worker process
(reports queue), read the table, and download its CSV."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest

from reports.models import ReportRun
from tests import reports_data
from tests.browser.pages import logged_in, screenshot
from tests.reports_data import RESEARCH

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_roi_report_runs_on_the_worker_and_its_csv_downloads(live_server, worker, page, project_a, tmp_path):
    reports_data.load(project_a)
    page = logged_in(page, live_server, "alice", "alice-password")
    page.goto(f"{live_server.url}/p/{project_a.slug}/reports/?range=all")
    # What one successful research run is worth, entered on the page.
    row = page.locator("[data-table=workflow-values] tr", has_text=RESEARCH)
    row.locator("input[name=value_usd]").fill("10")
    row.locator("button[type=submit]").click()
    page.wait_for_load_state()

    page.click("[data-run-roi]")
    # The page reloads itself while the worker computes; wait for the finished report.
    page.wait_for_selector("[data-report-status=done]", timeout=90_000)
    run = ReportRun.objects.get()
    assert (run.status, run.progress) == (ReportRun.Status.DONE, 100)
    research = page.locator("[data-table=roi] tbody tr", has_text=RESEARCH)
    assert "$11.75" in research.inner_text()
    assert "-14.89%" in research.inner_text()
    page.wait_for_selector(".chart[data-drawn='1']")
    screenshot(page, "roi-report")

    with page.expect_download() as download_info:
        page.click("[data-csv]")
    download = download_info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert download.suggested_filename == f"{project_a.slug}-roi-{run.pk}-all-time.csv"
    rows = {r["workflow"]: r for r in csv.DictReader(target.open()) if r["period"] == "all"}
    assert Decimal(rows[RESEARCH]["api_cost_usd"]) == Decimal("11.75")
    assert Decimal(rows[RESEARCH]["roi_percent"]) == Decimal("-14.89")
    assert rows[RESEARCH]["successful_runs"] == "1"
    assert page.js_errors == []
