"""Trace completeness: a trace with spans whose parent never arrived is marked incomplete on its
row (tracer/rollup.py, tracer/tree.py `quality`), whatever order its spans arrive in and however
often a batch is replayed; the API, the CSV export, the traces list (badge and filter) and the
trace page (one "missing parent" node) show it; migration 0010 backfills stored traces."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.factories import NOW, chat, ingest_spans, otlp_span, sid, tid
from tracer import ingest, tree
from tracer.models import IngestBatch, Trace

TRACE = tid(7)


def root():
    return otlp_span(sid(1), trace=TRACE, name="invoke_workflow plan", start=NOW)


def orphans():
    """Two spans under a parent (sid 2) that is not sent with them, and a child of one of them."""
    return [
        otlp_span(sid(3), sid(2), trace=TRACE, name="chat a", start=NOW + 3, attrs=chat(input=100, output=10)),
        otlp_span(sid(4), sid(2), trace=TRACE, name="chat b", start=NOW + 4, attrs=chat(input=200, output=20)),
        otlp_span(sid(5), sid(3), trace=TRACE, name="http", start=NOW + 5),
    ]


def parent():
    return otlp_span(sid(2), sid(1), trace=TRACE, name="invoke_agent helper", start=NOW + 2)


def trace_row() -> Trace:
    return Trace.objects.get(trace_id=TRACE)


# --- The rollup ---------------------------------------------------------------------------------


def test_a_trace_whose_parent_never_arrived_is_incomplete(project_a) -> None:
    ingest_spans(project_a, root(), *orphans())
    trace = trace_row()
    assert (trace.incomplete, trace.missing_parents) == (True, 1)
    # Its totals still count the calls that did arrive.
    assert (trace.billed_count, trace.input_tokens) == (2, 300)


def test_the_parent_arriving_after_its_children_makes_the_trace_complete(project_a) -> None:
    ingest_spans(project_a, *orphans())
    assert (trace_row().incomplete, trace_row().missing_parents) == (True, 1)
    ingest_spans(project_a, root())
    # The root came, sid(2) did not: still one missing parent.
    assert (trace_row().incomplete, trace_row().missing_parents) == (True, 1)

    ingest_spans(project_a, parent())
    trace = trace_row()
    assert (trace.incomplete, trace.missing_parents, trace.span_count) == (False, 0, 5)


def test_the_flags_are_the_same_whatever_the_arrival_order(project_a, project_b) -> None:
    ingest_spans(project_a, root(), parent(), *orphans())
    # Children first, then their parent, then the root: one span per batch.
    for span in [*orphans()[::-1], parent(), root()]:
        ingest_spans(project_b, span)
    fields = ("incomplete", "missing_parents", "billed_count", "no_usage_count", "framework", "span_count")
    whole = Trace.objects.filter(project=project_a).values(*fields).get()
    piecewise = Trace.objects.filter(project=project_b).values(*fields).get()
    assert whole == piecewise
    assert (whole["incomplete"], whole["missing_parents"]) == (False, 0)


def test_replaying_the_batches_of_an_incomplete_trace_changes_nothing(project_a) -> None:
    ingest_spans(project_a, root(), *orphans())
    fields = ("incomplete", "missing_parents", "billed_count", "no_usage_count", "framework", "span_count")
    before = Trace.objects.filter(project=project_a).values(*fields).get()
    for batch in IngestBatch.objects.filter(project=project_a):
        ingest.batch_replay(batch_id=batch.pk, inline=True)
        ingest.batch_replay(batch_id=batch.pk, inline=True)
    assert Trace.objects.filter(project=project_a).values(*fields).get() == before
    assert before["incomplete"] is True


# --- The API and the CSV export -----------------------------------------------------------------


def api(client, secret: str, path: str, **params: str) -> Any:
    response = client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def two_traces(project_a) -> tuple[str, str]:
    """An incomplete trace (TRACE) and a whole one."""
    ingest_spans(project_a, root(), *orphans())
    whole = tid(8)
    ingest_spans(project_a, otlp_span(sid(1), trace=whole, name="whole", start=NOW + 100))
    return TRACE, whole


def test_the_api_gives_the_flags_in_the_list_and_the_detail(client, key_a, two_traces) -> None:
    incomplete, whole = two_traces
    listed = {t["trace_id"]: t for t in api(client, key_a[1], "/api/v1/traces")["data"]}
    assert (listed[incomplete]["incomplete"], listed[incomplete]["missing_parents"]) == (True, 1)
    assert (listed[whole]["incomplete"], listed[whole]["missing_parents"]) == (False, 0)
    assert listed[incomplete]["framework"] == "tests"

    detail = api(client, key_a[1], f"/api/v1/traces/{incomplete}")
    assert (detail["trace"]["incomplete"], detail["trace"]["missing_parents"]) == (True, 1)
    # The API's tree keeps orphans as flagged roots (no synthetic node in the data).
    assert [(e["span_id"], e["orphan"]) for e in detail["tree"]] == [(sid(1), False), (sid(3), True), (sid(4), True)]


def test_the_api_list_filters_on_completeness(client, key_a, two_traces) -> None:
    incomplete, whole = two_traces
    only = api(client, key_a[1], "/api/v1/traces", incomplete="true")
    assert [t["trace_id"] for t in only["data"]] == [incomplete]
    assert only["totals"]["incomplete_count"] == 1
    assert [t["trace_id"] for t in api(client, key_a[1], "/api/v1/traces", incomplete="false")["data"]] == [whole]
    assert api(client, key_a[1], "/api/v1/traces")["totals"]["incomplete_count"] == 1
    bad = client.get("/api/v1/traces", {"incomplete": "maybe"}, HTTP_AUTHORIZATION=f"Bearer {key_a[1]}")
    assert bad.status_code == 400 and "incomplete" in bad.json()["error"]


def test_the_traces_csv_has_the_flags(client, key_a, two_traces) -> None:
    incomplete, whole = two_traces
    response = client.get("/api/v1/export/traces.csv", HTTP_AUTHORIZATION=f"Bearer {key_a[1]}")
    assert response.status_code == 200
    rows = {r["trace_id"]: r for r in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}
    assert (rows[incomplete]["incomplete"], rows[incomplete]["missing_parents"]) == ("true", "1")
    assert (rows[whole]["incomplete"], rows[whole]["missing_parents"]) == ("false", "0")
    assert (rows[incomplete]["framework"], rows[incomplete]["billed_calls"]) == ("tests", "2")
    assert rows[incomplete]["calls_without_usage"] == "0"


# --- The dashboard ------------------------------------------------------------------------------


def test_the_traces_list_shows_a_badge_and_filters_on_completeness(client, bob, project_a, two_traces) -> None:
    incomplete, whole = two_traces
    client.force_login(bob)
    page = client.get(f"/p/{project_a.slug}/traces/").content.decode()
    rows = dict(re.findall(r'<tr data-trace-id="(\w+)">(.*?)</tr>', page, re.S))
    assert 'data-badge="incomplete"' in rows[incomplete]
    assert 'data-badge="incomplete"' not in rows[whole]

    only = client.get(f"/p/{project_a.slug}/traces/", {"incomplete": "true"})
    assert [t.trace_id for t in only.context["listing"].page.object_list] == [incomplete]
    assert '<option value="true" selected>' in only.content.decode()
    complete = client.get(f"/p/{project_a.slug}/traces/", {"incomplete": "false"})
    assert [t.trace_id for t in complete.context["listing"].page.object_list] == [whole]
    assert client.get(f"/p/{project_a.slug}/traces/", {"incomplete": "maybe"}).status_code == 400


def test_the_trace_page_hangs_orphans_under_one_missing_parent_node(client, bob, project_a, two_traces) -> None:
    incomplete, whole = two_traces
    client.force_login(bob)
    response = client.get(f"/p/{project_a.slug}/traces/{incomplete}/")
    html = response.content.decode()
    assert "incomplete: 1 missing parent</span>" in html
    roots = [row.node.span_id for row in response.context["rows"] if row.node and row.node.depth == 0]
    assert roots == [sid(1), tree.MISSING_PARENT_ID]
    depths = {row.node.span_id: row.node.depth for row in response.context["rows"] if row.node}
    assert depths == {sid(1): 0, tree.MISSING_PARENT_ID: 0, sid(3): 1, sid(4): 1, sid(5): 2}
    assert html.count("is-missing-parent") == 1
    assert f"{sid(2)}" in html  # the missing parent's id is named
    # The page counts spans, not the synthetic node.
    assert "4 span(s)" in html

    whole_page = client.get(f"/p/{project_a.slug}/traces/{whole}/").content.decode()
    assert "is-missing-parent" not in whole_page and 'data-badge="incomplete"' not in whole_page


def test_the_missing_parent_node_expands_on_demand(client, bob, project_a, two_traces) -> None:
    client.force_login(bob)
    url = f"/p/{project_a.slug}/traces/{TRACE}/children"
    response = client.get(url, {"parent": tree.MISSING_PARENT_ID})
    assert response.status_code == 200
    assert [row.node.span_id for row in response.context["rows"]] == [sid(3), sid(4)]
    assert [row.node.depth for row in response.context["rows"]] == [1, 1]
    # Paging the roots lists the node once, after the real root.
    roots = client.get(url, {"parent": ""}).context["rows"]
    assert [row.node.span_id for row in roots if row.node.depth == 0] == [sid(1), tree.MISSING_PARENT_ID]


# --- The migration's backfill -------------------------------------------------------------------

BEFORE = [("tracer", "0011_project_retention")]
AFTER = [("tracer", "0012_hq_completeness")]


@pytest.mark.django_db(transaction=True)
def test_the_migration_backfills_stored_traces() -> None:
    executor = MigrationExecutor(connection)
    old = executor.migrate(BEFORE).apps
    project = old.get_model("tracer", "Project").objects.create(name="Old", slug="old")
    span_model = old.get_model("tracer", "Span")

    def span(trace: str, span_id: int, parent: int | None, **fields: Any) -> Any:
        return span_model(
            project_id=project.pk,
            trace_id=trace,
            span_id=sid(span_id),
            parent_span_id=sid(parent) if parent else "",
            name="s",
            start_time_unix_nano=NOW + span_id,
            end_time_unix_nano=NOW + span_id + 1,
            **fields,
        )

    span_model.objects.bulk_create(
        [
            span(tid(1), 1, None, scope_name="lib.a"),
            span(tid(1), 3, 2, scope_name="lib.b", kind="llm", input_tokens=5, output_tokens=1, billed=True),
            span(tid(1), 4, 9, scope_name="lib.b", kind="llm"),
            span(tid(2), 1, None, scope_name="lib.a", kind="llm"),
        ]
    )
    old_trace = old.get_model("tracer", "Trace")
    for trace in (tid(1), tid(2)):
        old_trace.objects.create(
            project_id=project.pk, trace_id=trace, start_time_unix_nano=NOW, end_time_unix_nano=NOW + 10
        )

    executor.loader.build_graph()
    executor.migrate(AFTER)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    fields = ("trace_id", "incomplete", "missing_parents", "billed_count", "no_usage_count", "framework")
    got = {t["trace_id"]: t for t in Trace.objects.filter(project_id=project.pk).values(*fields)}
    assert got[tid(1)] == {
        "trace_id": tid(1),
        "incomplete": True,
        "missing_parents": 2,
        "billed_count": 1,
        "no_usage_count": 1,
        "framework": "lib.b",
    }
    assert got[tid(2)] == {
        "trace_id": tid(2),
        "incomplete": False,
        "missing_parents": 0,
        "billed_count": 0,
        "no_usage_count": 1,
        "framework": "lib.a",
    }
