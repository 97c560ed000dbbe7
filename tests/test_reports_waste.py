"""Token waste (reports/waste.py) against figures computed by hand from
tests/reports_data.py: re-sent context from fingerprints and from captured content, the cacheable
prefix and its saving at the cached-input price, context growth and the top wasteful agents."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reports import waste
from tests import reports_data
from tests.factories import chat, ingest_spans, otlp_span, price, sid, tid
from tests.reports_data import RESEARCH, START_T1, T1, T3, TRIAGE, fingerprinted, workflow_root
from tracer.models import Trace


@pytest.fixture
def loaded(project_a):
    reports_data.load(project_a)
    return project_a


def compute(project, **filters):
    return waste.waste_compute(project=project, traces=Trace.objects.filter(project=project, **filters))


def test_fingerprints_split_input_into_unique_and_resent_tokens(loaded) -> None:
    result = compute(loaded, trace_id=T1)
    writer = result["by_agent"]["writer"]
    # a and b (1000 of 2000 estimated tokens) were sent by the planner already: half of 2M.
    assert (writer["input_tokens"], writer["resent_tokens"], writer["unique_input_tokens"]) == (
        2_000_000,
        1_000_000,
        1_000_000,
    )
    assert writer["resent_share"] == "0.5000"
    assert result["by_agent"]["planner"]["resent_tokens"] == 0
    assert result["totals"]["resent_tokens"] == 1_000_000


def test_the_cacheable_prefix_is_saved_at_the_cached_input_price_minus_what_was_cached(loaded) -> None:
    writer = compute(loaded, trace_id=T1)["by_agent"]["writer"]
    assert (writer["cacheable_tokens"], writer["cached_tokens"], writer["uncached_cacheable_tokens"]) == (
        1_000_000,
        500_000,
        500_000,
    )
    assert Decimal(writer["saving_usd"]) == Decimal("0.75")  # 500k x ($2 - $0.50) / 1M


def test_captured_content_is_used_when_there_are_no_fingerprints(loaded) -> None:
    critic = compute(loaded, trace_id=T3)["by_agent"]["critic"]
    assert (critic["resent_tokens"], critic["cacheable_tokens"]) == (125_000, 125_000)
    assert Decimal(critic["saving_usd"]) == Decimal("0.1875")


def test_totals_count_calls_without_message_data_in_input_but_not_in_the_analysis(loaded) -> None:
    totals = compute(loaded)["totals"]
    assert totals["input_tokens"] == 4_500_100
    assert totals["covered_input_tokens"] == 3_500_100  # T2's call carries no message data
    assert totals["unique_input_tokens"] == 4_500_100 - 1_125_000
    assert Decimal(totals["saving_usd"]) == Decimal("0.9375")
    assert totals["unpriced_calls"] == 1  # T4's model has no price: no saving claimed for it


def test_by_workflow_and_top_traces(loaded) -> None:
    result = compute(loaded)
    assert result["by_workflow"][RESEARCH]["resent_tokens"] == 1_125_000
    assert result["by_workflow"][TRIAGE]["resent_tokens"] == 0
    assert [t["trace_id"] for t in result["top_traces"][:2]] == [T1, T3]
    assert result["top_traces"][0]["resent_tokens"] == 1_000_000


def test_top_wasteful_agents_are_ranked_by_resent_tokens(loaded) -> None:
    assert [a["agent"] for a in compute(loaded)["top_agents"]] == ["writer", "critic"]


def test_context_growth_is_the_average_input_of_each_agents_nth_call(loaded) -> None:
    growth = compute(loaded)["growth"]
    assert growth["critic"] == [
        {"turn": 1, "avg_input_tokens": 250_000, "traces": 1},
        {"turn": 2, "avg_input_tokens": 250_000, "traces": 1},
    ]
    # Calls outside any agent: T2's 1M and T4's 100, both a first turn.
    assert growth[""] == [{"turn": 1, "avg_input_tokens": 500_050, "traces": 2}]


def test_a_project_override_of_the_cached_price_wins(loaded) -> None:
    price(input="2", cached_input="1", output="10", project=loaded)
    writer = compute(loaded, trace_id=T1)["by_agent"]["writer"]
    assert Decimal(writer["saving_usd"]) == Decimal("0.5")  # 500k x ($2 - $1) / 1M


def test_repeats_count_only_within_a_trace(loaded) -> None:
    # Another run sending the same messages as T1's planner re-sends nothing within itself.
    trace = tid(8)
    ingest_spans(
        loaded,
        workflow_root(trace, RESEARCH, START_T1 + 1),
        fingerprinted(
            otlp_span(sid(2), sid(1), trace=trace, start=START_T1 + 2, attrs=chat(input=1000, output=1)),
            ["a", "b"],
            [300, 700],
        ),
    )
    assert compute(loaded, trace_id=trace)["totals"]["resent_tokens"] == 0


def test_the_prefix_is_the_longest_run_of_leading_messages_an_earlier_call_sent() -> None:
    trie = waste._Trie()
    trie.insert(["a", "b", "c"])
    assert trie.longest(["a", "b", "x"]) == 2
    assert trie.longest(["b"]) == 0
    assert waste.call_messages({}) is None
    assert waste.call_messages({"gen_ai.input.messages": "not json"}) is None


def test_openinference_flattened_messages_are_read() -> None:
    messages = waste.call_messages(
        {
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "x" * 40,
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "y" * 8,
        }
    )
    assert [tokens for _, tokens in messages] == [10, 2]
