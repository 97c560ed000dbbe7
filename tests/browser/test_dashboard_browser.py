"""The dashboard in a real browser, on data sent through the real pipeline (OTLP/HTTP to a live
server, a Celery worker process, the database)."""

from __future__ import annotations

import re

import pytest
import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import octotrace
from dashboard.templatetags.octo import tokens, usd
from examples.research_crew import crew
from tests.browser.pages import logged_in, screenshot
from tests.factories import wait_until_processed
from tracer.models import Span, Trace
from tracer.pricing import prices_sync

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__pwned = 'script'</script>"
IMG = "<img src=x onerror=\"window.__pwned = 'img'\">"


def send(live_server, secret: str, build) -> None:
    """Record spans with the OpenTelemetry SDK and POST them as OTLP protobuf, as an exporter would."""
    collector = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "browser-test"}))
    provider.add_span_processor(SimpleSpanProcessor(collector))
    build(provider.get_tracer("browser-test"))
    provider.shutdown()
    response = requests.post(
        f"{live_server.url}/v1/traces",
        data=encode_spans(collector.get_finished_spans()).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def hostile_trace(tracer) -> None:
    with tracer.start_as_current_span(f"invoke_workflow {SCRIPT}") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_workflow")
        with tracer.start_as_current_span(f"execute_tool {IMG}") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", IMG)
            tool.set_attribute("tool.output", f"page said: {SCRIPT} and {IMG}")


@pytest.fixture
def crew_run(live_server, worker, project_a, key_a):
    """One run of the example crew (four agents, seven model calls) plus a hostile trace."""
    _, secret = key_a
    prices_sync()  # a transactional test before this one flushed the catalog the migration loaded
    octotrace.init(endpoint=live_server.url, api_key=secret, service_name="research-crew", fetch_prices=False)
    try:
        crew.run(runs=1)
    finally:
        octotrace.shutdown()
    send(live_server, secret, hostile_trace)
    wait_until_processed(project_a)
    return project_a


def test_a_member_follows_the_money_from_the_list_to_one_step(crew_run, live_server, page):
    logged_in(page, live_server, "bob", "bob-password")
    page.goto(f"{live_server.url}/p/{crew_run.slug}/")
    page.wait_for_selector(".chart[data-drawn='1']")
    assert page.text_content("[data-stat=traces]") == "2"
    screenshot(page, "overview")

    # The traces list, filtered server-side by agent and status.
    page.click("nav.pages >> text=Traces")
    assert page.locator("table[data-table=traces] tbody tr").count() == 2
    page.fill("input[name=agent]", "analyst")
    page.select_option("select[name=status]", "ok")
    page.click("form[data-filters] button[type=submit]")
    page.wait_for_url(re.compile(r"agent=analyst"))
    rows = page.locator("table[data-table=traces] tbody tr")
    assert rows.count() == 1
    assert "research_report" in rows.first.text_content()
    rows.first.locator("a").first.click()

    # The tree: collapse everything, then expand down to the researcher's chat call.
    page.wait_for_selector("[data-tree-table]")
    page.click("[data-tree=collapse-all]")
    researcher = Span.objects.get(project=crew_run, kind="agent", agent_name="researcher")
    call = (
        Span.objects.filter(project=crew_run, kind="llm", agent_name="researcher", parent_span_id=researcher.span_id)
        .order_by("start_time_unix_nano")
        .first()
    )
    call_row = page.locator(f"tr[data-span-id='{call.span_id}']")
    assert call_row.is_hidden()
    path = []
    span = researcher
    while span is not None:
        path.append(span.span_id)
        span = Span.objects.filter(project=crew_run, trace_id=span.trace_id, span_id=span.parent_span_id).first()
    for span_id in reversed(path):
        page.click(f"tr[data-span-id='{span_id}'] [data-toggle]")
    call_row.wait_for(state="visible")

    # The step's tokens and cost are the database's.
    assert call.billed and call.cost is not None
    assert call_row.locator("[data-col=input]").text_content() == tokens(call.input_tokens)
    assert call_row.locator("[data-col=cached]").text_content() == tokens(call.cached_input_tokens)
    assert call_row.locator("[data-col=output]").text_content() == tokens(call.output_tokens)
    assert call_row.locator("[data-col=reasoning]").text_content() == tokens(call.reasoning_tokens)
    assert call_row.locator("[data-col=cost]").text_content() == usd(call.cost)
    researcher_subtree = page.locator(f"tr[data-span-id='{researcher.span_id}'] [data-col=subtree-cost]")
    below = Span.objects.filter(project=crew_run, trace_id=call.trace_id, agent_name="researcher", billed=True)
    # The embedding call has no catalog price: unpriced, flagged on its row, left out of the sum.
    assert researcher_subtree.text_content() == usd(sum(s.cost for s in below if s.cost is not None))

    # Its attributes, in the side panel.
    call_row.locator("[data-span-link]").click()
    panel = page.locator(f".span-panel[data-span-id='{call.span_id}']")
    panel.wait_for()
    assert panel.locator("[data-panel=cost]").text_content() == usd(call.cost)
    attributes = panel.locator("table[data-table=attributes]").text_content()
    assert "gen_ai.request.model" in attributes and call.model in attributes
    assert f"span={call.span_id}" in page.url
    screenshot(page, "trace")
    assert page.js_errors == []


def test_hostile_span_text_is_shown_as_text_and_runs_nothing(crew_run, live_server, page):
    logged_in(page, live_server, "alice", "alice-password")
    trace = Trace.objects.get(project=crew_run, root_span_name__contains="<script>")
    page.goto(f"{live_server.url}/p/{crew_run.slug}/traces/")
    assert page.get_by_text(f"invoke_workflow {SCRIPT}").count() == 1
    page.goto(f"{live_server.url}/p/{crew_run.slug}/traces/{trace.trace_id}/")
    tool = Span.objects.get(project=crew_run, trace_id=trace.trace_id, kind="tool")
    page.click(f"tr[data-span-id='{tool.span_id}'] [data-span-link]")
    page.locator(f".span-panel[data-span-id='{tool.span_id}']").wait_for()
    assert f"page said: {SCRIPT} and {IMG}" in page.locator("table[data-table=attributes]").text_content()
    # Reloaded with the panel rendered by the server, too.
    page.reload()
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("window.__pwned === undefined")
    assert page.js_errors == []


def test_a_member_of_project_a_gets_404_for_project_b_by_url(crew_run, live_server, page, project_b, key_b):
    send(live_server, key_b[1], hostile_trace)
    wait_until_processed(project_b)
    foreign = Trace.objects.get(project=project_b)
    logged_in(page, live_server, "bob", "bob-password")
    for path in (
        f"/p/{project_b.slug}/traces/{foreign.trace_id}/",
        f"/p/{crew_run.slug}/traces/{foreign.trace_id}/",
        f"/p/{project_b.slug}/",
    ):
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 404, path
