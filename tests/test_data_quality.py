"""Data quality per framework: each trace's framework (its instrumentation scope, tracer/tree.py
`framework`) and its model calls without usage, from the corpus captures' ground truth; the
overview's table per framework (exact fractions with their counts, unpriced never $0) in a fixed
number of queries."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import pytest

from dashboard import selectors
from dashboard.filters import TimeRange
from tests.factories import (
    CORPUS_CAPTURES,
    NOW,
    UNPRICED_MODEL,
    chat,
    corpus_bytes,
    ingest_spans,
    otlp_span,
    price,
    sid,
    tid,
)
from tracer import ingest, otlp
from tracer.models import Project, Trace

# From tests/fixtures/otlp/README.md ("Conventions observed"): the scope of each capture's chat
# spans, how many model calls the instrumentation exported (8 in the scenario; the legacy release
# sends no embeddings span) and how many came without usage (the analyst's stream sent without
# include_usage, in every capture).
GROUND_TRUTH = {
    "otel-openai-v2-multiagent-content": ("opentelemetry.util.genai.handler", 8, 1),
    "otel-openai-v2-multiagent-nocontent": ("opentelemetry.util.genai.handler", 8, 1),
    "otel-openai-v2-legacy-multiagent-content": ("opentelemetry.instrumentation.openai_v2", 7, 1),
    "openinference-openai-multiagent": ("openinference.instrumentation.openai", 8, 1),
    "openinference-openai-multiagent-genai-semconv": ("openinference.instrumentation.openai", 8, 1),
    "traceloop-openai-multiagent-content": ("opentelemetry.instrumentation.openai.v1", 8, 1),
    "traceloop-openai-multiagent-nocontent": ("opentelemetry.instrumentation.openai.v1", 8, 1),
}
ALL_TIME = TimeRange(start_ns=None, end_ns=None, label="all time", params={"range": "all"})


def ingest_capture(project: Project, stem: str) -> None:
    body_file, encoding = next((body, enc) for s, body, enc in CORPUS_CAPTURES if s == stem)
    batch = ingest.batch_accept(
        project=project, body=corpus_bytes(body_file), content_type=otlp.PROTOBUF, content_encoding=encoding
    )
    assert batch is not None
    ingest.batch_process(batch_id=batch.pk)


@pytest.mark.parametrize("stem", list(GROUND_TRUTH))
def test_each_capture_names_its_framework_and_its_calls_without_usage(project_a, stem) -> None:
    ingest_capture(project_a, stem)
    framework, calls, without_usage = GROUND_TRUTH[stem]
    trace = Trace.objects.get(project=project_a)
    assert trace.framework == framework
    assert (trace.billed_count + trace.no_usage_count, trace.no_usage_count) == (calls, without_usage)
    assert (trace.incomplete, trace.missing_parents) == (False, 0)


# --- The overview -------------------------------------------------------------------------------

OURS = "acme.instrumentation"
ONLY_UNPRICED = "other.instrumentation"


def our_traces(project: Project) -> None:
    """Two traces of OURS: five model calls in all (four with usage, one of them unpriced, and one
    without usage), and one of the two traces incomplete; and one trace of ONLY_UNPRICED."""
    call = chat(input=500_000, output=100_000)  # $1 + $1 at the test price of tests.factories.MODEL
    ingest_spans(
        project,
        otlp_span(sid(1), trace=tid(1), name="invoke_workflow w", start=NOW),
        otlp_span(sid(2), sid(1), trace=tid(1), name="chat", start=NOW + 1, attrs=call),
        otlp_span(sid(3), sid(1), trace=tid(1), name="chat", start=NOW + 2, attrs=call),
        otlp_span(sid(4), sid(1), trace=tid(1), name="chat", start=NOW + 3, attrs=chat(model=UNPRICED_MODEL, input=7)),
        otlp_span(sid(5), sid(1), trace=tid(1), name="chat", start=NOW + 4, attrs=chat()),
        scope=OURS,
    )
    ingest_spans(
        project,
        otlp_span(sid(2), sid(1), trace=tid(2), name="chat", start=NOW + 10, attrs=call),
        scope=OURS,
    )
    ingest_spans(
        project,
        otlp_span(sid(1), trace=tid(3), name="chat", start=NOW + 20, attrs=chat(model=UNPRICED_MODEL, input=9)),
        scope=ONLY_UNPRICED,
    )


def test_the_overview_gives_each_frameworks_shares_with_their_counts(project_a) -> None:
    price(input="2", output="10")
    our_traces(project_a)
    ingest_capture(project_a, "openinference-openai-multiagent")

    rows = {q.framework: q for q in selectors.overview(project=project_a, time_range=ALL_TIME)["quality"]}

    ours = rows[OURS]
    assert (ours.traces, ours.incomplete, ours.incomplete_share) == (2, 1, Fraction(1, 2))
    assert (ours.calls, ours.no_usage, ours.unpriced) == (5, 1, 1)
    assert (ours.no_usage_share, ours.unpriced_share) == (Fraction(1, 5), Fraction(1, 5))
    assert ours.cost == Decimal(6)
    unpriced = rows[ONLY_UNPRICED]
    assert (unpriced.calls, unpriced.unpriced, unpriced.unpriced_share, unpriced.cost) == (1, 1, Fraction(1), None)
    openinference = rows["openinference.instrumentation.openai"]
    # Ground truth (README): 8 calls, 1 without usage, none incomplete.
    assert (openinference.traces, openinference.calls, openinference.no_usage) == (1, 8, 1)
    assert (openinference.incomplete, openinference.incomplete_share) == (0, Fraction(0))
    # Most traces first.
    assert next(iter(rows)) == OURS


def test_the_overview_table_shows_counts_and_never_shows_unpriced_as_zero(client, bob, project_a) -> None:
    price(input="2", output="10")
    our_traces(project_a)
    client.force_login(bob)
    html = client.get(f"/p/{project_a.slug}/", {"range": "all"}).content.decode()
    rows = dict(re.findall(r'<tr data-framework="([^"]*)">(.*?)</tr>', html, re.S))
    ours = rows[OURS]
    assert re.search(r'data-col="incomplete">.*1 / 2</a> <span class="muted">\(50\.0%\)', ours)
    assert re.search(r'data-col="no-usage">1 / 5 <span class="muted">\(20\.0%\)', ours)
    assert re.search(r'data-col="unpriced">1 / 5 <span class="muted">\(20\.0%\)', ours)
    assert "$6.00" in ours and "+?" in ours
    assert f"framework={OURS}&amp;incomplete=true" in ours
    only = rows[ONLY_UNPRICED]
    assert ">unpriced<" in only and "$0" not in only


def test_the_traces_list_filters_on_framework_and_shows_it(client, bob, project_a) -> None:
    our_traces(project_a)
    client.force_login(bob)
    response = client.get(f"/p/{project_a.slug}/traces/", {"framework": ONLY_UNPRICED})
    assert [t.trace_id for t in response.context["listing"].page.object_list] == [tid(3)]
    assert f'<span class="chip framework" title="instrumentation scope">{ONLY_UNPRICED}</span>' in (
        response.content.decode()
    )
    page = client.get(f"/p/{project_a.slug}/traces/{tid(1)}/").content.decode()
    assert f'data-framework title="instrumentation scope">{OURS}<' in page
    assert re.search(r'data-stat="no-usage">1<', page)


def test_the_overview_runs_a_fixed_number_of_queries(client, bob, project_a, django_assert_num_queries) -> None:
    client.force_login(bob)
    ingest_spans(project_a, otlp_span(sid(1), trace=tid(9), start=NOW, attrs=chat(input=1, output=1)))
    # session, user, membership, switcher, stats, percentiles, billed-span groups, frameworks, budget banner
    with django_assert_num_queries(9):
        one = client.get(f"/p/{project_a.slug}/")
    our_traces(project_a)
    for n in range(5):
        ingest_spans(project_a, otlp_span(sid(1), trace=tid(100 + n), start=NOW, attrs=chat()), scope=f"lib.{n}")
    with django_assert_num_queries(9):
        many = client.get(f"/p/{project_a.slug}/")
    assert len(one.context["quality"]) == 1 and len(many.context["quality"]) == 8
