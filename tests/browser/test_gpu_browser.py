"""The GPUs page and a trace's GPU panel in a real browser (charts drawn by charts.js under the
CSP, no inline script), on samples and a span attributed by the real service."""

from __future__ import annotations

import pytest

from tests.browser.pages import logged_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_member_sees_the_gpus_and_follows_a_trace_to_its_gpu_steps(gpu_data, live_server, page):  # noqa: F811
    logged_in(page, live_server, "bob", "bob-password")
    page.click("nav.pages >> text=GPUs")
    page.wait_for_selector(".chart[data-figure=fig-gpu-power][data-drawn='1']")
    assert page.locator(".chart[data-drawn='1']").count() == 3
    assert page.text_content("[data-stat=gpu-attributed-cost]").startswith("$0.00277")
    assert page.locator("table[data-table=gpus] tbody tr").count() == 1
    screenshot(page, "gpus")

    page.click("table[data-table=gpu-traces] >> text=research crew")
    page.wait_for_selector(".chart[data-figure=fig-trace-gpu][data-drawn='1']")
    step = page.locator("table[data-table=trace-gpu-steps] tbody tr")
    assert step.count() == 1 and "0.4444 Wh" in step.text_content()
    screenshot(page, "trace-gpu")
    assert page.js_errors == []
