"""Attribute conventions in the wild, mapped onto Octotrace's normalized span columns.

Everything here is a table: to support another instrumentation, add its attribute keys to the
tables below rather than writing another branch. The first key present wins, so conventions that
repeat the same number under two names (OpenInference with GenAI attributes on, for example)
are read once. Normalization never fails a span: a value of an unexpected type is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit


class Kind:
    AGENT = "agent"
    LLM = "llm"
    TOOL = "tool"
    EMBEDDING = "embedding"
    RETRIEVER = "retriever"
    WORKFLOW = "workflow"
    OTHER = "other"


# (attribute key, {value (case-insensitive): kind}), in priority order. The framework-specific
# span kinds come first: they describe the span itself, while gen_ai.operation.name is also
# emitted on agent and tool spans by some helpers.
KIND_RULES: list[tuple[str, dict[str, str]]] = [
    (
        "openinference.span.kind",
        {
            "llm": Kind.LLM,
            "agent": Kind.AGENT,
            "tool": Kind.TOOL,
            "embedding": Kind.EMBEDDING,
            "retriever": Kind.RETRIEVER,
            "reranker": Kind.RETRIEVER,
            "chain": Kind.WORKFLOW,
            "guardrail": Kind.OTHER,
            "evaluator": Kind.OTHER,
        },
    ),
    (
        "traceloop.span.kind",
        {"workflow": Kind.WORKFLOW, "task": Kind.WORKFLOW, "agent": Kind.AGENT, "tool": Kind.TOOL},
    ),
    (
        "gen_ai.operation.name",
        {
            "chat": Kind.LLM,
            "text_completion": Kind.LLM,
            "generate_content": Kind.LLM,
            "completion": Kind.LLM,
            "embeddings": Kind.EMBEDDING,
            "embedding": Kind.EMBEDDING,
            "invoke_agent": Kind.AGENT,
            "create_agent": Kind.AGENT,
            "execute_tool": Kind.TOOL,
            "invoke_workflow": Kind.WORKFLOW,
            "retrieval": Kind.RETRIEVER,
        },
    ),
    # OpenLLMetry before it adopted gen_ai.operation.name.
    ("llm.request.type", {"chat": Kind.LLM, "completion": Kind.LLM, "embedding": Kind.EMBEDDING}),
]

# Normalized token field -> attribute keys, first present wins. Input includes cached input and
# output includes reasoning (OTel GenAI); the parts are stored separately.
TOKEN_KEYS: dict[str, tuple[str, ...]] = {
    "input_tokens": (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",
        "llm.token_count.prompt",
        "llm.usage.prompt_tokens",
    ),
    "output_tokens": (
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.token_count.completion",
        "llm.usage.completion_tokens",
    ),
    "cached_input_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",
        "llm.usage.cache_read_input_tokens",
    ),
    "cache_write_tokens": (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",
        "llm.usage.cache_creation_input_tokens",
    ),
    "reasoning_tokens": (
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
        "llm.token_count.completion_details.reasoning",
        "llm.usage.reasoning_tokens",
    ),
    "total_tokens": ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total"),
}

# Model served (response) before model asked for (request).
RESPONSE_MODEL_KEYS = ("gen_ai.response.model", "llm.response.model", "llm.model_name", "embedding.model_name")
REQUEST_MODEL_KEYS = ("gen_ai.request.model", "llm.request.model")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
# Where the request went: a known API host names the real provider.
ENDPOINT_KEYS = ("server.address", "gen_ai.openai.api_base", "url.full", "http.url")
AGENT_NAME_KEYS = ("gen_ai.agent.name", "agent.name")
# Names an agent span carries for itself (only read on agent spans).
ENTITY_NAME_KEYS = ("traceloop.entity.name",)
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "traceloop.association.properties.session_id")
# Who the work was done for (the end user): no column, read where a deletion on request needs it
# (tracer/deletion.py). `enduser.id` is the older OTel name of `user.id`.
USER_KEYS = ("user.id", "enduser.id", "traceloop.association.properties.user_id")
REPORTED_COST_KEYS = ("gen_ai.usage.cost", "llm.cost.total", "gen_ai.cost.total")
# Whether a run achieved its purpose (octotrace.set_success); read by the ROI report.
SUCCESS_KEYS = ("octotrace.success",)
# Span-name decorations that frameworks add around an agent's name.
AGENT_NAME_PREFIXES = ("invoke_agent ",)
AGENT_NAME_SUFFIXES = (".agent",)

KNOWN_HOSTS: dict[str, str] = {
    "integrate.api.nvidia.com": "nvidia",
    "ai.api.nvidia.com": "nvidia",
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "google",
    "api.deepinfra.com": "deepinfra",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "openrouter.ai": "openrouter",
    "api.fireworks.ai": "fireworks",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral",
}
# What OpenAI-compatible client libraries report whatever server they talk to.
CLIENT_LIBRARY_PROVIDERS = frozenset({"openai"})


@dataclass(slots=True)
class Normalized:
    kind: str = Kind.OTHER
    agent_name: str = ""
    model: str = ""
    provider: str = ""
    session_id: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    total_tokens: int | None = None
    reported_cost: Decimal | None = None

    @property
    def has_usage(self) -> bool:
        return self.input_tokens is not None or self.output_tokens is not None


_TOKEN_KEY_SET = frozenset(key for keys in TOKEN_KEYS.values() for key in keys)
_COST_KEY_SET = frozenset(REPORTED_COST_KEYS)
_ENDPOINT_KEY_SET = frozenset(ENDPOINT_KEYS)


def normalize(*, name: str, attributes: dict[str, Any]) -> Normalized:
    out = Normalized()
    # Most spans (tools, agents, plain code) carry no usage: a set intersection, done in C,
    # skips the token lookups for them. This runs once per span on the ingest path.
    if not _TOKEN_KEY_SET.isdisjoint(attributes):
        out.input_tokens = _first_int(attributes, TOKEN_KEYS["input_tokens"])
        out.output_tokens = _first_int(attributes, TOKEN_KEYS["output_tokens"])
        out.cached_input_tokens = _first_int(attributes, TOKEN_KEYS["cached_input_tokens"])
        out.cache_write_tokens = _first_int(attributes, TOKEN_KEYS["cache_write_tokens"])
        out.reasoning_tokens = _first_int(attributes, TOKEN_KEYS["reasoning_tokens"])
        out.total_tokens = _first_int(attributes, TOKEN_KEYS["total_tokens"])
        if out.total_tokens is None and out.has_usage:
            out.total_tokens = (out.input_tokens or 0) + (out.output_tokens or 0)
    if not _COST_KEY_SET.isdisjoint(attributes):
        out.reported_cost = _first_decimal(attributes, REPORTED_COST_KEYS)

    out.kind = _kind(attributes, has_usage=out.has_usage)
    out.model = _model(attributes)
    out.provider = _provider(attributes)
    out.session_id = session_of(attributes)
    out.agent_name = _agent_name(name, attributes, is_agent=out.kind == Kind.AGENT)[:200]
    return out


def _kind(attributes: dict[str, Any], *, has_usage: bool) -> str:
    for key, mapping in KIND_RULES:
        value = attributes.get(key)
        if isinstance(value, str):
            kind = mapping.get(value.lower())
            if kind:
                return kind
    return Kind.LLM if has_usage else Kind.OTHER


def _model(attributes: dict[str, Any]) -> str:
    response = _first_str(attributes, RESPONSE_MODEL_KEYS)
    request = _first_str(attributes, REQUEST_MODEL_KEYS)
    # Some instrumentations strip the namespace from the response model ("nvidia/x" -> "x"):
    # keep the request's fuller name when it is the same model.
    if response and request and request.endswith("/" + response):
        return request[:200]
    return (response or request)[:200]


def _provider(attributes: dict[str, Any]) -> str:
    declared = _first_str(attributes, PROVIDER_KEYS).lower()
    host_provider = ""
    for key in ENDPOINT_KEYS if not _ENDPOINT_KEY_SET.isdisjoint(attributes) else ():
        value = attributes.get(key)
        if isinstance(value, str) and value:
            host = (urlsplit(value).hostname if "//" in value else value.split(":")[0]) or ""
            host_provider = KNOWN_HOSTS.get(host.lower(), "")
            if host_provider:
                break
    if host_provider and (not declared or declared in CLIENT_LIBRARY_PROVIDERS):
        return host_provider
    return (declared or host_provider)[:100]


def _agent_name(name: str, attributes: dict[str, Any], *, is_agent: bool) -> str:
    declared = _first_str(attributes, AGENT_NAME_KEYS)
    if declared or not is_agent:
        return declared
    entity = _first_str(attributes, ENTITY_NAME_KEYS)
    if entity:
        return entity
    for prefix in AGENT_NAME_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    for suffix in AGENT_NAME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _first_int(attributes: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attributes.get(key)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value if value >= 0 else None
        if isinstance(value, float) and value.is_integer() and value >= 0:
            return int(value)
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def session_of(attributes: dict[str, Any]) -> str:
    """The session (conversation) a span belongs to, as stored in Span.session_id; "" if none."""
    return _first_str(attributes, SESSION_KEYS)[:200]


def user_ids_of(attributes: dict[str, Any]) -> set[str]:
    """The end-user ids a span's (or resource's) attributes name, as text (an integer id too)."""
    return {
        str(value)
        for key in USER_KEYS
        if isinstance(value := attributes.get(key), str | int) and not isinstance(value, bool) and value != ""
    }


def _first_str(attributes: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _first_decimal(attributes: dict[str, Any], keys: tuple[str, ...]) -> Decimal | None:
    for key in keys:
        value = attributes.get(key)
        if value is None or isinstance(value, bool):
            continue
        try:
            # Through str: a float's repr is its shortest exact decimal, not its binary expansion.
            number = Decimal(str(value))
        except InvalidOperation:
            continue
        if number.is_finite() and number >= 0:
            return number
    return None
