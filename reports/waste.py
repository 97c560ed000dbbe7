"""Token waste: how much of what the agents send is context they already sent.

Per billed model call, in start order within each trace, the input messages are known from the
SDK's content-free fingerprints (`octotrace.input.message_hashes` / `message_tokens`), or else from
captured content (`gen_ai.input.messages`, or OpenInference's `llm.input_messages.N.message.*`),
hashed here. Calls without either are counted in the input tokens but not in the analysis
(`covered_input_tokens` says how much was analysed).

For each analysed call:
- re-sent tokens = input tokens x (estimated tokens of the messages an earlier call of the same
  trace already sent) / (estimated tokens of all its messages), rounded down. The estimates only
  split the provider's own input count between messages; unique input = input - re-sent.
- cacheable prefix = input tokens x (estimated tokens of the longest run of leading messages that
  an earlier call of the same trace to the same model started with) / (all its estimated tokens),
  rounded down: what a provider's prompt cache could have served. Cacheable but not cached =
  cacheable prefix - the call's cached input tokens (not below 0).
- saving = cacheable but not cached x (input price - cached-input price) / 1M, at the prices in
  force for the call's model and day (project overrides win); None when the model is unpriced.
Context growth: input tokens of each agent's n-th call in a trace, averaged over traces.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from reports.common import add, day_of, money
from tracer import messages
from tracer.models import Project, Span, Trace
from tracer.pricing import PER_TOKENS, PriceBook

ATTR_MESSAGE_HASHES = "octotrace.input.message_hashes"
ATTR_MESSAGE_TOKENS = "octotrace.input.message_tokens"
ATTR_INPUT_MESSAGES = "gen_ai.input.messages"
OPENINFERENCE_PREFIX = "llm.input_messages."
MAX_TURNS = 50
TOP = 10
CHUNK = 2000

Messages = list[tuple[str, int]]


def estimate_tokens(text: str) -> int:
    """The SDK's estimate (4 characters a token), so that both sources weigh messages alike."""
    return math.ceil(len(text) / 4) if text else 0


def _digest(obj: Any) -> str:
    encoded = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]


def call_messages(attributes: dict[str, Any]) -> Messages | None:
    """(hash, estimated tokens) of each input message of a call, or None when unknown."""
    hashes, tokens = attributes.get(ATTR_MESSAGE_HASHES), attributes.get(ATTR_MESSAGE_TOKENS)
    if isinstance(hashes, list) and isinstance(tokens, list) and len(hashes) == len(tokens) and hashes:
        if all(isinstance(h, str) for h in hashes) and all(isinstance(t, int) and t >= 0 for t in tokens):
            return list(zip(hashes, tokens, strict=True))
    captured = attributes.get(ATTR_INPUT_MESSAGES)
    if isinstance(captured, str):
        try:
            captured = json.loads(captured)
        except ValueError:
            captured = None
    if isinstance(captured, list) and captured and all(isinstance(m, dict) for m in captured):
        return [("c" + _digest(m), estimate_tokens(_genai_text(m))) for m in captured]
    if any(key.startswith(OPENINFERENCE_PREFIX) for key in attributes):
        return _openinference_messages(attributes)
    return None


def _genai_text(message: dict[str, Any]) -> str:
    parts = message.get("parts")
    if not isinstance(parts, list):
        return json.dumps(message, default=str)
    out = []
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("content"), str):
            out.append(part["content"])
        elif isinstance(part, dict) and isinstance(part.get("response"), str):
            out.append(part["response"])
        else:
            out.append(json.dumps(part, default=str))
    return "".join(out)


def _openinference_messages(attributes: dict[str, Any]) -> Messages | None:
    by_index: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in attributes.items():
        if not key.startswith(OPENINFERENCE_PREFIX):
            continue
        index, _, rest = key[len(OPENINFERENCE_PREFIX) :].partition(".")
        if index.isdigit():
            by_index[int(index)][rest] = value
    if not by_index:
        return None
    out = []
    for index in sorted(by_index):
        message = by_index[index]
        content = message.get("message.content")
        text = content if isinstance(content, str) else json.dumps(content, default=str) if content else ""
        out.append(("o" + _digest(message), estimate_tokens(text)))
    return out


class _Trie:
    """Message-hash prefixes of earlier calls: the longest one a new call starts with."""

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root: dict[str, dict] = {}

    def longest(self, hashes: list[str]) -> int:
        node, depth = self.root, 0
        for h in hashes:
            node = node.get(h)
            if node is None:
                break
            depth += 1
        return depth

    def insert(self, hashes: list[str]) -> None:
        node = self.root
        for h in hashes:
            node = node.setdefault(h, {})


@dataclass(slots=True)
class Tally:
    calls: int = 0
    input_tokens: int = 0
    covered_input_tokens: int = 0
    resent_tokens: int = 0
    cacheable_tokens: int = 0
    cached_tokens: int = 0
    uncached_cacheable_tokens: int = 0
    saving: Decimal | None = None
    unpriced_calls: int = 0

    def add_call(self, call: dict[str, Any]) -> None:
        self.calls += 1
        self.input_tokens += call["input_tokens"]
        self.covered_input_tokens += call["covered"]
        self.resent_tokens += call["resent"]
        self.cacheable_tokens += call["cacheable"]
        self.cached_tokens += call["cached"]
        self.uncached_cacheable_tokens += call["uncached_cacheable"]
        self.saving = add(self.saving, call["saving"])
        self.unpriced_calls += call["unpriced"]

    def as_dict(self) -> dict[str, Any]:
        unique = self.input_tokens - self.resent_tokens
        share = (Decimal(self.resent_tokens) / self.covered_input_tokens) if self.covered_input_tokens else None
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "covered_input_tokens": self.covered_input_tokens,
            "unique_input_tokens": unique,
            "resent_tokens": self.resent_tokens,
            "resent_share": money(share.quantize(Decimal("0.0001")) if share is not None else None),
            "cacheable_tokens": self.cacheable_tokens,
            "cached_tokens": self.cached_tokens,
            "uncached_cacheable_tokens": self.uncached_cacheable_tokens,
            "saving_usd": money(self.saving),
            "unpriced_calls": self.unpriced_calls,
        }


def _call_waste(span: dict[str, Any], messages: Messages | None, seen: set[str], trie: _Trie, prices: PriceBook):
    inputs = span["input_tokens"] or 0
    cached = min(span["cached_input_tokens"] or 0, inputs)
    call = {"input_tokens": inputs, "covered": 0, "resent": 0, "cacheable": 0, "cached": cached}
    call.update({"uncached_cacheable": 0, "saving": None, "unpriced": 0})
    if not messages:
        return call
    estimated = sum(t for _, t in messages)
    hashes = [h for h, _ in messages]
    if estimated > 0:
        resent_estimate = sum(t for h, t in messages if h in seen)
        prefix = trie.longest(hashes)
        prefix_estimate = sum(t for _, t in messages[:prefix])
        call["covered"] = inputs
        call["resent"] = inputs * resent_estimate // estimated
        call["cacheable"] = inputs * prefix_estimate // estimated
        call["uncached_cacheable"] = max(0, call["cacheable"] - cached)
        price = prices.find(provider=span["provider"], model=span["model"], day=day_of(span["start_time_unix_nano"]))
        if price is None:
            call["unpriced"] = 1
        else:
            cached_price = price.input if price.cached_input is None else price.cached_input
            call["saving"] = call["uncached_cacheable"] * (price.input - cached_price) / PER_TOKENS
    seen.update(hashes)
    trie.insert(hashes)
    return call


def _restored(spans: QuerySet, *, project_id: int) -> Iterator[dict[str, Any]]:
    """The spans in order, a chunk at a time, their captured messages put back from the message store."""
    chunk: list[dict[str, Any]] = []
    for span in spans.iterator(chunk_size=CHUNK):
        chunk.append(span)
        if len(chunk) == CHUNK:
            messages.spans_restore(project_id=project_id, spans=chunk)
            yield from chunk
            chunk = []
    messages.spans_restore(project_id=project_id, spans=chunk)
    yield from chunk


def waste_compute(
    *,
    project: Project,
    traces: QuerySet[Trace],
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Token waste of these traces (already filtered): totals, by workflow, by agent, top traces,
    top wasteful agents and context growth per turn per agent. Money as decimal strings."""
    prices = PriceBook(project_id=project.pk)
    workflow = Subquery(
        Trace.objects.filter(project=project, trace_id=OuterRef("trace_id")).values("root_span_name")[:1]
    )
    spans = (
        Span.objects.filter(project=project, billed=True, trace_id__in=traces.values("trace_id"))
        .annotate(workflow=workflow)
        .order_by("trace_id", "start_time_unix_nano", "span_id")
        .values(
            "trace_id",
            "workflow",
            "agent_name",
            "model",
            "provider",
            "start_time_unix_nano",
            "input_tokens",
            "cached_input_tokens",
            "attributes",
        )
    )
    total = Tally()
    by_agent: dict[str, Tally] = defaultdict(Tally)
    by_workflow: dict[str, Tally] = defaultdict(Tally)
    top_traces: list[tuple[int, str, dict[str, Any]]] = []
    # (agent, turn) -> [sum of input tokens, number of traces with that turn]
    growth: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])

    current: str | None = None
    trace_tally = Tally()
    trace_workflow = ""
    seen: set[str] = set()
    tries: dict[str, _Trie] = {}
    turns: dict[str, int] = defaultdict(int)

    def close_trace() -> None:
        if current is None:
            return
        entry = (trace_tally.resent_tokens, current, {"trace_id": current, "workflow": trace_workflow})
        if len(top_traces) < TOP:
            heapq.heappush(top_traces, entry)
        elif entry > top_traces[0]:
            heapq.heapreplace(top_traces, entry)
        top_traces_tallies[current] = trace_tally
        # Only the top traces' tallies are kept.
        for stale in set(top_traces_tallies) - {t for _, t, _ in top_traces}:
            del top_traces_tallies[stale]

    top_traces_tallies: dict[str, Tally] = {}
    for span in _restored(spans, project_id=project.pk):
        if span["trace_id"] != current:
            close_trace()
            current, trace_tally, trace_workflow = span["trace_id"], Tally(), span["workflow"] or ""
            seen, tries, turns = set(), {}, defaultdict(int)
        messages = call_messages(span["attributes"] or {})
        trie = tries.setdefault(span["model"], _Trie())
        call = _call_waste(span, messages, seen, trie, prices)
        agent = span["agent_name"] or ""
        for tally in (total, by_agent[agent], by_workflow[trace_workflow], trace_tally):
            tally.add_call(call)
        turns[agent] += 1
        if turns[agent] <= MAX_TURNS:
            cell = growth[(agent, turns[agent])]
            cell[0] += call["input_tokens"]
            cell[1] += 1
    close_trace()

    agents = {name: tally.as_dict() for name, tally in sorted(by_agent.items())}
    wasteful = sorted(agents.items(), key=lambda kv: (-kv[1]["resent_tokens"], kv[0]))[:TOP]
    growth_by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (agent, turn), (tokens, count) in sorted(growth.items()):
        growth_by_agent[agent].append({"turn": turn, "avg_input_tokens": tokens // count, "traces": count})
    if progress is not None:
        progress(100)
    return {
        "totals": total.as_dict(),
        "by_workflow": {name: tally.as_dict() for name, tally in sorted(by_workflow.items())},
        "by_agent": agents,
        "top_agents": [{"agent": name, **figures} for name, figures in wasteful if figures["resent_tokens"] > 0],
        "top_traces": [
            {**meta, **top_traces_tallies[trace_id].as_dict()} for _, trace_id, meta in sorted(top_traces, reverse=True)
        ],
        "growth": dict(growth_by_agent),
    }
