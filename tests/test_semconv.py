"""Attribute conventions mapped onto normalized columns (tracer/semconv.py), one convention a test."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tracer.semconv import normalize


def test_it_reads_current_otel_genai_usage_with_cache_and_reasoning_parts():
    n = normalize(
        name="chat gpt-4o",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 600,
            "gen_ai.usage.cache_creation.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 120,
        },
    )
    assert (n.kind, n.model, n.provider) == ("llm", "gpt-4o-2024-08-06", "openai")
    assert (n.input_tokens, n.output_tokens, n.total_tokens) == (1000, 300, 1300)
    assert (n.cached_input_tokens, n.cache_write_tokens, n.reasoning_tokens) == (600, 100, 120)


def test_it_reads_the_deprecated_prompt_and_completion_tokens_and_gen_ai_system():
    n = normalize(
        name="chat",
        attributes={
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.prompt_tokens": 42,
            "gen_ai.usage.completion_tokens": 7,
        },
    )
    assert (n.kind, n.provider, n.input_tokens, n.output_tokens, n.total_tokens) == ("llm", "anthropic", 42, 7, 49)


def test_it_reads_openinference_token_counts_and_span_kinds():
    n = normalize(
        name="ChatCompletion",
        attributes={
            "openinference.span.kind": "LLM",
            "llm.model_name": "nvidia/nemotron-3-nano-30b-a3b",
            "llm.provider": "nvidia",
            "llm.token_count.prompt": 179,
            "llm.token_count.completion": 49,
            "llm.token_count.total": 228,
            "llm.token_count.prompt_details.cache_read": 48,
            "llm.token_count.completion_details.reasoning": 0,
        },
    )
    assert (n.kind, n.model, n.provider) == ("llm", "nvidia/nemotron-3-nano-30b-a3b", "nvidia")
    assert (n.input_tokens, n.output_tokens, n.total_tokens, n.cached_input_tokens, n.reasoning_tokens) == (
        179,
        49,
        228,
        48,
        0,
    )


@pytest.mark.parametrize(
    ("kind_attribute", "expected"),
    [
        ({"openinference.span.kind": "AGENT"}, "agent"),
        ({"openinference.span.kind": "TOOL"}, "tool"),
        ({"openinference.span.kind": "RETRIEVER"}, "retriever"),
        ({"openinference.span.kind": "EMBEDDING"}, "embedding"),
        ({"openinference.span.kind": "CHAIN"}, "workflow"),
        ({"traceloop.span.kind": "workflow"}, "workflow"),
        ({"traceloop.span.kind": "task"}, "workflow"),
        ({"traceloop.span.kind": "agent"}, "agent"),
        ({"gen_ai.operation.name": "execute_tool"}, "tool"),
        ({"gen_ai.operation.name": "invoke_agent"}, "agent"),
        ({"gen_ai.operation.name": "embeddings"}, "embedding"),
        ({"llm.request.type": "chat"}, "llm"),
        ({"http.method": "GET"}, "other"),
    ],
)
def test_it_classifies_span_kinds_from_every_convention(kind_attribute, expected):
    assert normalize(name="x", attributes=kind_attribute).kind == expected


def test_framework_span_kinds_win_over_the_operation_name():
    attributes = {"openinference.span.kind": "AGENT", "gen_ai.operation.name": "chat"}
    assert normalize(name="planner", attributes=attributes).kind == "agent"


def test_it_reads_openllmetry_totals_and_entity_names():
    llm = normalize(
        name="openai.chat",
        attributes={
            "llm.request.type": "chat",
            "gen_ai.request.model": "nvidia/llama-3.1-nemotron-ultra-253b-v1",
            "gen_ai.response.model": "llama-3.1-nemotron-ultra-253b-v1",
            "gen_ai.usage.input_tokens": 52,
            "gen_ai.usage.output_tokens": 118,
            "llm.usage.total_tokens": 170,
            "gen_ai.usage.cache_read_input_tokens": 0,
            "gen_ai.usage.reasoning_tokens": 82,
        },
    )
    # The response model lost its namespace: the request's fuller name is the same model.
    assert llm.model == "nvidia/llama-3.1-nemotron-ultra-253b-v1"
    assert (llm.total_tokens, llm.cached_input_tokens, llm.reasoning_tokens) == (170, 0, 82)
    agent = normalize(
        name="planner.agent", attributes={"traceloop.span.kind": "agent", "traceloop.entity.name": "planner"}
    )
    assert (agent.kind, agent.agent_name) == ("agent", "planner")


def test_it_names_agents_from_the_span_name_when_no_attribute_does():
    assert normalize(
        name="invoke_agent researcher", attributes={"gen_ai.operation.name": "invoke_agent"}
    ).agent_name == ("researcher")
    assert normalize(name="analyst", attributes={"openinference.span.kind": "AGENT"}).agent_name == "analyst"


def test_it_infers_nvidia_from_the_api_host_when_the_client_library_says_openai():
    n = normalize(
        name="chat",
        attributes={"gen_ai.provider.name": "openai", "server.address": "integrate.api.nvidia.com", "server.port": 443},
    )
    assert n.provider == "nvidia"
    from_url = normalize(name="chat", attributes={"gen_ai.openai.api_base": "https://integrate.api.nvidia.com/v1"})
    assert from_url.provider == "nvidia"


def test_a_declared_provider_other_than_the_client_library_is_kept():
    n = normalize(name="chat", attributes={"gen_ai.provider.name": "aws.bedrock", "server.address": "api.openai.com"})
    assert n.provider == "aws.bedrock"


def test_an_unknown_host_does_not_change_the_provider():
    n = normalize(name="chat", attributes={"gen_ai.provider.name": "openai", "server.address": "127.0.0.1"})
    assert n.provider == "openai"


def test_it_groups_conversations_and_keeps_reported_costs():
    n = normalize(
        name="chat",
        attributes={"gen_ai.conversation.id": "conv-7", "gen_ai.usage.input_tokens": 1, "gen_ai.usage.cost": 0.0125},
    )
    assert n.session_id == "conv-7"
    assert n.reported_cost == Decimal("0.0125")


def test_first_present_key_wins_so_repeated_conventions_are_read_once():
    n = normalize(
        name="ChatCompletion",
        attributes={"llm.token_count.prompt": 52, "gen_ai.usage.input_tokens": 52, "gen_ai.usage.output_tokens": 118},
    )
    assert (n.input_tokens, n.output_tokens, n.total_tokens) == (52, 118, 170)


@pytest.mark.parametrize(
    "bad",
    [
        {"gen_ai.usage.input_tokens": "many"},
        {"gen_ai.usage.input_tokens": -5},
        {"gen_ai.usage.input_tokens": True},
        {"gen_ai.usage.input_tokens": [1, 2]},
        {"gen_ai.usage.input_tokens": 1.5},
        {"gen_ai.request.model": {"nested": "dict"}},
        {"gen_ai.usage.cost": "NaN"},
        {"gen_ai.usage.cost": "free"},
        {"server.address": ["not", "a", "host"]},
    ],
)
def test_it_never_fails_a_span_over_an_attribute(bad):
    n = normalize(name="weird", attributes=bad)
    assert n.input_tokens is None
    assert n.reported_cost is None
    assert n.model == ""


def test_integer_strings_and_whole_floats_are_token_counts():
    n = normalize(name="chat", attributes={"gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": 3.0})
    assert (n.input_tokens, n.output_tokens) == (12, 3)
