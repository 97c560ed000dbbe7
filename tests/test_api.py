"""The read API (tracer/api.py) through Django's test client: tenancy, the trace list with its
filters and cursor, the trace detail with its tree, and the effective prices."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from tests.factories import MODEL, chat, ingest_spans, ns, otlp_span, price, sid, tid
from tracer.models import ApiKey, Project
from tracer.projects import apikey_revoke

LIST = "/api/v1/traces"
PRICES = "/api/v1/prices"
DAY = ns("2026-03-01T00:00:00")
HOUR = 3600 * 1_000_000_000


def bearer(key: tuple[ApiKey, str]) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key[1]}"}


def get(client, url: str, key: tuple[ApiKey, str] | None = None, **params: Any):
    return client.get(url, params, **(bearer(key) if key else {}))


def trace_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [t["trace_id"] for t in response.json()["data"]]


def simple_trace(project: Project, n: int, *, start: int | None = None, **kwargs: Any) -> str:
    """Trace tid(n): a root span and one chat call under it."""
    start = DAY + n * HOUR if start is None else start
    trace = tid(n)
    ingest_spans(
        project,
        otlp_span(sid(1), trace=trace, name=kwargs.pop("name", f"run {n}"), start=start, **kwargs),
        otlp_span(sid(2), sid(1), trace=trace, start=start + 1000, attrs=chat(input=1_000_000, output=100_000)),
    )
    return trace


@pytest.fixture
def acme_price(db):
    return price(input="2", cached_input="0.5", output="10")


# --- Who sees what ------------------------------------------------------------------------------


def test_an_api_key_sees_only_its_own_project(client, project_a, project_b, key_a, key_b) -> None:
    mine = simple_trace(project_a, 1)
    theirs = simple_trace(project_b, 2)

    assert trace_ids(get(client, LIST, key_a)) == [mine]
    assert trace_ids(get(client, LIST, key_b)) == [theirs]


def test_the_key_can_come_in_the_octotrace_header(client, project_a, key_a) -> None:
    mine = simple_trace(project_a, 1)

    response = client.get(LIST, HTTP_X_OCTOTRACE_KEY=key_a[1])

    assert trace_ids(response) == [mine]


def test_a_logged_in_member_sees_the_project_they_name(client, project_a, project_b, bob) -> None:
    mine = simple_trace(project_a, 1)
    simple_trace(project_b, 2)
    client.force_login(bob)

    assert trace_ids(get(client, LIST, project=project_a.slug)) == [mine]
    assert get(client, f"{LIST}/{mine}", project=project_a.slug).status_code == 200


def test_a_logged_in_user_who_is_not_a_member_gets_404(client, project_a, charlie) -> None:
    trace = simple_trace(project_a, 1)
    client.force_login(charlie)

    assert get(client, LIST, project=project_a.slug).status_code == 404
    assert get(client, f"{LIST}/{trace}", project=project_a.slug).status_code == 404
    assert get(client, PRICES, project=project_a.slug).status_code == 404


def test_a_logged_in_user_must_name_the_project(client, project_a, bob) -> None:
    client.force_login(bob)

    assert get(client, LIST).status_code == 400


def test_a_member_of_one_project_cannot_read_another(client, project_a, project_b, bob) -> None:
    client.force_login(bob)

    assert get(client, LIST, project=project_b.slug).status_code == 404


@pytest.mark.parametrize("url", [LIST, f"{LIST}/{tid(1)}", PRICES])
def test_no_authentication_is_401(client, project_a, url: str) -> None:
    response = client.get(url)

    assert response.status_code == 401
    assert "error" in response.json()


def test_an_unknown_key_is_401(client, project_a) -> None:
    response = client.get(LIST, HTTP_AUTHORIZATION="Bearer otk_not-a-key")

    assert response.status_code == 401


def test_a_revoked_key_is_401(client, project_a, key_a) -> None:
    simple_trace(project_a, 1)
    apikey_revoke(key=key_a[0])

    assert get(client, LIST, key_a).status_code == 401
    assert get(client, f"{LIST}/{tid(1)}", key_a).status_code == 401


def test_a_key_naming_another_projects_slug_is_404(client, project_a, project_b, key_b) -> None:
    simple_trace(project_a, 1)

    assert get(client, LIST, key_b, project=project_a.slug).status_code == 404
    assert get(client, f"{LIST}/{tid(1)}", key_b, project=project_a.slug).status_code == 404


def test_a_key_naming_its_own_slug_is_fine(client, project_a, key_a) -> None:
    mine = simple_trace(project_a, 1)

    assert trace_ids(get(client, LIST, key_a, project=project_a.slug)) == [mine]


def test_another_projects_trace_id_is_404(client, project_a, project_b, key_a) -> None:
    theirs = simple_trace(project_b, 7)

    assert get(client, f"{LIST}/{theirs}", key_a).status_code == 404


def test_an_unknown_trace_id_is_404(client, project_a, key_a) -> None:
    assert get(client, f"{LIST}/{tid(99)}", key_a).status_code == 404


def test_writes_are_refused(client, project_a, key_a) -> None:
    assert client.post(LIST, **bearer(key_a)).status_code == 405


# --- The list ---------------------------------------------------------------------------------


def test_the_list_is_newest_first_with_rollups(client, project_a, key_a, acme_price) -> None:
    for n in (2, 1, 3):
        simple_trace(project_a, n)

    response = get(client, LIST, key_a)

    assert trace_ids(response) == [tid(3), tid(2), tid(1)]
    first = response.json()["data"][0]
    assert first["cost"] == "3.0000000000"
    assert first["input_tokens"] == 1_000_000
    assert first["span_count"] == 2
    assert first["root_span_name"] == "run 3"
    assert first["start_time_unix_nano"] == DAY + 3 * HOUR
    assert response.json()["next_cursor"] is None


def test_the_cursor_walks_every_trace_once_without_gaps(client, project_a, key_a) -> None:
    # Traces 5 to 7 start at the same instant: the cursor must break the tie.
    for n in range(1, 10):
        simple_trace(project_a, n, start=DAY + 5 * HOUR if 5 <= n <= 7 else DAY + n * HOUR)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = get(client, LIST, key_a, **params)
        page = trace_ids(response)
        assert 1 <= len(page) <= 2
        seen.extend(page)
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break

    assert pages == 5
    assert len(seen) == len(set(seen)) == 9
    assert set(seen) == {tid(n) for n in range(1, 10)}
    assert seen[:2] == [tid(9), tid(8)]
    assert seen[-4:] == [tid(4), tid(3), tid(2), tid(1)]


def test_the_cursor_keeps_the_filters(client, project_a, key_a) -> None:
    for n in range(1, 6):
        simple_trace(project_a, n, error=n % 2 == 1)

    first = get(client, LIST, key_a, status="error", limit=2)
    second = get(client, LIST, key_a, status="error", limit=2, cursor=first.json()["next_cursor"])

    assert trace_ids(first) + trace_ids(second) == [tid(5), tid(3), tid(1)]
    assert second.json()["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["garbage", "bm90LWEtY3Vyc29y", "MToyOjM=", "_w==", "MTI6YWJj"])
def test_a_bad_cursor_is_400(client, project_a, key_a, cursor: str) -> None:
    simple_trace(project_a, 1)

    response = get(client, LIST, key_a, cursor=cursor)

    assert response.status_code == 400
    assert "cursor" in response.json()["error"]


@pytest.mark.parametrize("limit", ["0", "-1", "ten", "1.5", ""])
def test_a_bad_limit_is_400(client, project_a, key_a, limit: str) -> None:
    response = get(client, LIST, key_a, limit=limit)

    assert response.status_code == 400
    assert "limit" in response.json()["error"]


def test_a_large_limit_is_capped(client, project_a, key_a) -> None:
    simple_trace(project_a, 1)

    assert trace_ids(get(client, LIST, key_a, limit=100_000)) == [tid(1)]


def test_it_filters_by_time_range(client, project_a, key_a) -> None:
    for n in (1, 2, 3, 4):
        simple_trace(project_a, n)  # starts at 01:00, 02:00, 03:00, 04:00

    # from is inclusive, to exclusive.
    both = get(client, LIST, key_a, **{"from": "2026-03-01T02:00:00Z", "to": "2026-03-01T04:00:00+00:00"})
    assert trace_ids(both) == [tid(3), tid(2)]
    # No offset means UTC.
    assert trace_ids(get(client, LIST, key_a, **{"from": "2026-03-01T03:00:00"})) == [tid(4), tid(3)]
    assert trace_ids(get(client, LIST, key_a, to="2026-03-01T01:30:00")) == [tid(1)]
    # Another offset is honoured.
    assert trace_ids(get(client, LIST, key_a, to="2026-03-01T04:00:00+02:00")) == [tid(1)]


@pytest.mark.parametrize("param", ["from", "to"])
def test_a_bad_datetime_is_400(client, project_a, key_a, param: str) -> None:
    response = get(client, LIST, key_a, **{param: "yesterday"})

    assert response.status_code == 400
    assert param in response.json()["error"]


def test_it_filters_by_status(client, project_a, key_a) -> None:
    simple_trace(project_a, 1)
    simple_trace(project_a, 2, error=True)

    assert trace_ids(get(client, LIST, key_a, status="error")) == [tid(2)]
    assert trace_ids(get(client, LIST, key_a, status="ok")) == [tid(1)]
    assert get(client, LIST, key_a, status="broken").status_code == 400


def test_it_filters_by_min_cost(client, project_a, key_a) -> None:
    price(input="2", output="10")
    cheap, dear = tid(1), tid(2)
    ingest_spans(project_a, otlp_span(sid(1), trace=cheap, start=DAY, attrs=chat(input=500_000, output=0)))
    ingest_spans(project_a, otlp_span(sid(1), trace=dear, start=DAY + 1, attrs=chat(input=1_500_000, output=0)))
    ingest_spans(project_a, otlp_span(sid(1), trace=tid(3), start=DAY + 2, attrs=chat(model="unpriced-x", input=9)))

    assert trace_ids(get(client, LIST, key_a, min_cost="2")) == [dear]
    assert trace_ids(get(client, LIST, key_a, min_cost="3")) == [dear]
    assert trace_ids(get(client, LIST, key_a, min_cost="0.5")) == [dear, cheap]
    assert get(client, LIST, key_a, min_cost="lots").status_code == 400


def test_the_list_totals_every_matching_trace_not_just_the_page(client, project_a, key_a) -> None:
    price(input="2", output="10")
    ingest_spans(project_a, otlp_span(sid(1), trace=tid(1), start=DAY, attrs=chat(input=500_000, output=1000)))
    ingest_spans(project_a, otlp_span(sid(1), trace=tid(2), start=DAY + 1, attrs=chat(input=1_500_000, output=0)))
    ingest_spans(project_a, otlp_span(sid(1), trace=tid(3), start=DAY + 2, attrs=chat(model="unpriced-x", input=9)))

    totals = get(client, LIST, key_a, limit=1).json()["totals"]

    assert totals["trace_count"] == 3
    assert (totals["input_tokens"], totals["output_tokens"]) == (2_000_009, 1000)
    # 0.5M x $2 + 1000 x $10/1M + 1.5M x $2; the unpriced call adds nothing and is counted.
    assert Decimal(totals["cost"]) == Decimal("4.01")
    assert totals["unpriced_count"] == 1
    filtered = get(client, LIST, key_a, min_cost="2").json()["totals"]
    assert (filtered["trace_count"], Decimal(filtered["cost"])) == (1, Decimal("3"))


def test_it_filters_by_agent(client, project_a, key_a) -> None:
    agent_attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher"}
    simple_trace(project_a, 1, attrs=agent_attrs)
    simple_trace(project_a, 2, attrs={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "writer"})

    # The chat span under the agent is attributed to it too; one match is one trace.
    assert trace_ids(get(client, LIST, key_a, agent="researcher")) == [tid(1)]
    assert trace_ids(get(client, LIST, key_a, agent="nobody")) == []


def test_it_filters_by_model(client, project_a, key_a) -> None:
    simple_trace(project_a, 1)
    ingest_spans(project_a, otlp_span(sid(1), trace=tid(2), start=DAY, attrs=chat(model="other-model", input=1)))

    assert trace_ids(get(client, LIST, key_a, model=MODEL)) == [tid(1)]
    assert trace_ids(get(client, LIST, key_a, model="other-model")) == [tid(2)]


def test_it_filters_by_root_name_or_trace_id_with_q(client, project_a, key_a) -> None:
    simple_trace(project_a, 1, name="Plan a trip")
    simple_trace(project_a, 2, name="Summarize the news")

    assert trace_ids(get(client, LIST, key_a, q="TRIP")) == [tid(1)]
    assert trace_ids(get(client, LIST, key_a, q=tid(2).upper())) == [tid(2)]
    assert trace_ids(get(client, LIST, key_a, q="nothing like it")) == []


def test_it_filters_by_session(client, project_a, key_a) -> None:
    simple_trace(project_a, 1, attrs={"gen_ai.conversation.id": "conv-1"})
    simple_trace(project_a, 2, attrs={"gen_ai.conversation.id": "conv-2"})
    simple_trace(project_a, 3, attrs={"gen_ai.conversation.id": "conv-1"})

    response = get(client, LIST, key_a, session="conv-1")

    assert trace_ids(response) == [tid(3), tid(1)]
    assert {t["session_id"] for t in response.json()["data"]} == {"conv-1"}


# --- Query counts -------------------------------------------------------------------------------


def many_traces(project: Project, count: int, spans_each: int) -> None:
    for n in range(1, count + 1):
        trace = tid(n)
        spans = [otlp_span(sid(1), trace=trace, start=DAY + n * HOUR, name=f"run {n}")]
        spans += [
            otlp_span(sid(i), sid(1), trace=trace, start=DAY + n * HOUR + i, attrs=chat(input=10, output=1))
            for i in range(2, spans_each + 1)
        ]
        ingest_spans(project, *spans)


def settle_last_used(key: tuple[ApiKey, str]) -> None:
    # last_used_at is written at most once a minute: mark it fresh so no request writes it.
    ApiKey.objects.filter(pk=key[0].pk).update(last_used_at=timezone.now())


@pytest.mark.parametrize("count", [2, 20])
def test_the_list_takes_a_fixed_number_of_queries(client, project_a, key_a, django_assert_num_queries, count) -> None:
    many_traces(project_a, count, spans_each=3)
    settle_last_used(key_a)

    # The key, the totals of the matching traces, the page of traces.
    with django_assert_num_queries(3):
        response = get(client, LIST, key_a, agent="x", model=MODEL)
    assert response.status_code == 200
    with django_assert_num_queries(3):
        assert len(trace_ids(get(client, LIST, key_a, limit=50))) == count


@pytest.mark.parametrize("count", [2, 20])
def test_the_list_for_a_member_takes_a_fixed_number_of_queries(
    client, project_a, bob, django_assert_num_queries, count
) -> None:
    many_traces(project_a, count, spans_each=2)
    client.force_login(bob)

    # The session, the user, the membership, the totals, the page of traces.
    with django_assert_num_queries(5):
        assert len(trace_ids(get(client, LIST, project=project_a.slug))) == count


@pytest.mark.parametrize("spans_each", [2, 20])
def test_the_detail_takes_a_fixed_number_of_queries(
    client, project_a, key_a, django_assert_num_queries, spans_each
) -> None:
    many_traces(project_a, 2, spans_each=spans_each)
    settle_last_used(key_a)

    # The key, the trace, its spans.
    with django_assert_num_queries(3):
        response = get(client, f"{LIST}/{tid(2)}", key_a)
    assert len(response.json()["spans"]) == spans_each


# --- The detail -------------------------------------------------------------------------------


@pytest.fixture
def agent_trace(project_a, acme_price) -> str:
    """planner (agent) -> [chat (cached), researcher (agent) -> chat (unpriced), tool]."""
    trace = tid(42)
    agent = {"gen_ai.operation.name": "invoke_agent"}
    ingest_spans(
        project_a,
        otlp_span(sid(1), trace=trace, name="invoke_agent planner", start=DAY, attrs=agent),
        otlp_span(
            sid(2),
            sid(1),
            trace=trace,
            start=DAY + 10,
            attrs=chat(input=1_000_000, output=100_000, cached=400_000, **{"gen_ai.provider.name": "acme"}),
        ),
        otlp_span(sid(3), sid(1), trace=trace, name="invoke_agent researcher", start=DAY + 20, attrs=agent),
        otlp_span(sid(4), sid(3), trace=trace, start=DAY + 30, attrs=chat(model="unpriced-x", input=500, output=5)),
        otlp_span(
            sid(5),
            sid(3),
            trace=trace,
            name="search",
            start=DAY + 40,
            error=True,
            attrs={"gen_ai.operation.name": "execute_tool"},
        ),
    )
    return trace


def test_the_detail_has_the_trace_totals(client, key_a, agent_trace) -> None:
    body = get(client, f"{LIST}/{agent_trace}", key_a).json()

    trace = body["trace"]
    # 600k x $2 + 400k x $0.5 + 100k x $10
    assert trace["cost"] == "2.4000000000"
    assert trace["unpriced_count"] == 1
    assert (trace["input_tokens"], trace["output_tokens"], trace["cached_input_tokens"]) == (
        1_000_500,
        100_005,
        400_000,
    )
    assert (trace["status"], trace["span_count"], trace["error_count"]) == ("error", 5, 1)
    assert trace["root_span_id"] == sid(1)
    assert body["totals"]["cost"] == "2.4000000000"
    assert body["totals"]["unpriced_count"] == 1


def test_the_detail_lists_spans_with_normalized_fields_and_decimal_costs(client, key_a, agent_trace) -> None:
    body = get(client, f"{LIST}/{agent_trace}", key_a).json()

    spans = {s["span_id"]: s for s in body["spans"]}
    assert list(spans) == [sid(n) for n in range(1, 6)]
    call = spans[sid(2)]
    assert call["kind"] == "llm"
    assert call["model"] == MODEL
    assert call["provider"] == "acme"
    assert call["agent_name"] == "planner"
    assert call["cost"] == "2.4000000000"
    assert call["billed"] is True
    assert (call["input_tokens"], call["cached_input_tokens"], call["total_tokens"]) == (1_000_000, 400_000, 1_100_000)
    assert call["reasoning_tokens"] is None
    assert (call["depth"], call["orphan"], call["cycle"]) == (1, False, False)
    assert spans[sid(1)]["kind"] == "agent"
    assert spans[sid(1)]["agent_name"] == "planner"
    assert spans[sid(4)]["cost"] is None
    assert spans[sid(4)]["agent_name"] == "researcher"
    assert spans[sid(5)]["kind"] == "tool"
    assert spans[sid(5)]["status_code"] == 2


def test_the_detail_nests_the_tree_with_subtree_totals(client, key_a, agent_trace) -> None:
    body = get(client, f"{LIST}/{agent_trace}", key_a).json()

    (planner,) = body["tree"]
    assert planner["span_id"] == sid(1)
    assert planner["own"]["cost"] is None
    assert planner["subtree"]["cost"] == "2.4000000000"
    assert planner["subtree"]["span_count"] == 5
    assert planner["subtree"]["unpriced_count"] == 1
    call, researcher = planner["children"]
    assert call["own"]["cost"] == "2.4000000000"
    assert researcher["agent"] == "researcher"
    assert researcher["subtree"]["cost"] is None
    assert researcher["subtree"]["unpriced_count"] == 1
    assert researcher["subtree"]["input_tokens"] == 500
    assert [c["span_id"] for c in researcher["children"]] == [sid(4), sid(5)]


def test_the_detail_breaks_costs_down_by_agent_model_and_kind(client, key_a, agent_trace) -> None:
    body = get(client, f"{LIST}/{agent_trace}", key_a).json()

    assert body["by_agent"]["planner"]["cost"] == "2.4000000000"
    assert body["by_agent"]["researcher"]["cost"] is None
    assert body["by_agent"]["researcher"]["unpriced_count"] == 1
    assert body["by_model"][MODEL]["cost"] == "2.4000000000"
    assert body["by_model"]["unpriced-x"]["unpriced_count"] == 1
    assert body["by_kind"]["llm"]["billed_count"] == 2
    assert body["by_kind"]["tool"]["span_count"] == 1
    assert body["agents"] == [
        {
            "span_id": sid(1),
            "agent": "planner",
            "sub_agents": [{"span_id": sid(3), "agent": "researcher", "sub_agents": []}],
        }
    ]


def test_the_detail_accepts_an_upper_case_trace_id(client, key_a, agent_trace) -> None:
    assert get(client, f"{LIST}/{agent_trace.upper()}", key_a).status_code == 200


def test_the_detail_of_a_very_deep_trace_is_served(client, project_a, key_a) -> None:
    depth = 3000
    trace = tid(5)
    spans = [otlp_span(sid(1), trace=trace, start=DAY)]
    spans += [otlp_span(sid(i), sid(i - 1), trace=trace, start=DAY + i) for i in range(2, depth + 1)]
    ingest_spans(project_a, *spans)

    response = get(client, f"{LIST}/{trace}", key_a)

    assert response.status_code == 200
    assert response.json()["trace"]["span_count"] == depth


# --- Prices -------------------------------------------------------------------------------------


def prices_by_pattern(response) -> dict[tuple[str | None, str], dict[str, Any]]:
    assert response.status_code == 200, response.content
    assert response.json()["unit"] == "USD per 1M tokens"
    return {(p["provider"], p["model_pattern"]): p for p in response.json()["data"]}


def test_prices_lists_the_defaults(client, project_a, key_a) -> None:
    price(input="2", output="10", cached_input="0.5", cache_write="3", reasoning="20")

    listed = prices_by_pattern(get(client, PRICES, key_a))

    assert listed[(None, MODEL)] == {
        "scope": "default",
        "provider": None,
        "model_pattern": MODEL,
        "input": "2.000000",
        "cached_input": "0.500000",
        "cache_write": "3.000000",
        "output": "10.000000",
        "reasoning": "20.000000",
        "valid_from": "2025-01-01",
        "source": "",
        "note": "",
    }
    # The shipped catalog is there too.
    assert listed[("openai", "gpt-4o")]["scope"] == "default"


def test_prices_resolve_null_fallbacks(client, project_a, key_a) -> None:
    price(input="2", output="10")

    row = prices_by_pattern(get(client, PRICES, key_a))[(None, MODEL)]

    assert (row["cached_input"], row["cache_write"]) == ("2.000000", "2.000000")
    assert row["reasoning"] == "10.000000"


def test_a_project_override_replaces_the_default_for_that_project_only(
    client, project_a, project_b, key_a, key_b
) -> None:
    price(input="2", output="10")
    price(input="5", output="12", project=project_a)

    for_a = prices_by_pattern(get(client, PRICES, key_a))[(None, MODEL)]
    for_b = prices_by_pattern(get(client, PRICES, key_b))[(None, MODEL)]

    assert (for_a["scope"], for_a["input"], for_a["output"]) == ("project", "5.000000", "12.000000")
    assert (for_b["scope"], for_b["input"]) == ("default", "2.000000")
    assert sum(1 for p in get(client, PRICES, key_a).json()["data"] if p["model_pattern"] == MODEL) == 1


def test_prices_show_the_one_in_force_today(client, project_a, key_a) -> None:
    today = timezone.now().date()
    price(input="1", output="1", valid_from=date(2024, 1, 1))
    price(input="2", output="2", valid_from=today)
    price(input="3", output="3", valid_from=date(today.year + 1, 1, 1))

    row = prices_by_pattern(get(client, PRICES, key_a))[(None, MODEL)]

    assert row["input"] == "2.000000"
    assert row["valid_from"] == today.isoformat()


def test_prices_for_a_member(client, project_a, bob) -> None:
    price(input="2", output="10", project=project_a)
    client.force_login(bob)

    row = prices_by_pattern(get(client, PRICES, project=project_a.slug))[(None, MODEL)]

    assert row["scope"] == "project"
    assert Decimal(row["input"]) == Decimal(2)
