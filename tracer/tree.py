"""Call trees rebuilt from parent ids, robust to the data real traces contain.

Orphans (their parent never arrived) become roots flagged `orphan`; several roots are fine; a
cycle in bad data is broken at its earliest span, flagged `cycle`, so nothing loops forever.
Every walk is iterative (deep agent recursion must not hit Python's recursion limit). For the
trace page, `adopt_orphans` hangs the orphans under one synthetic "missing parent" node.

On top of the tree:
- billing: a span's usage is billed only if no descendant carries usage (a framework span above
  a client span, or two libraries instrumenting the same call, are billed once, at the leaf);
- agents: each span belongs to its nearest enclosing agent; agents nest by delegation;
- data quality (`quality`): the parents that never arrived, the model calls that came without
  usage, and the instrumentation scope (framework) the trace came from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
)


@dataclass(slots=True)
class Node:
    span: dict[str, Any]
    children: list[Node] = field(default_factory=list)
    orphan: bool = False
    cycle: bool = False
    depth: int = 0
    # Nearest enclosing agent (the span itself if it is an agent); "" when there is none.
    agent: str = ""
    # The nearest enclosing agent span's id, for the delegation hierarchy.
    agent_span_id: str = ""
    billed: bool = False
    subtree_usage: bool = False
    # A model call (MODEL_CALL_KINDS) in this node's subtree, the node included.
    subtree_call: bool = False
    # An ancestor is billed: its usage stands for the calls below it that carry none.
    covered: bool = False
    # The synthetic "missing parent" node of adopt_orphans: no span stands behind it.
    synthetic: bool = False

    @property
    def span_id(self) -> str:
        return self.span["span_id"]


@dataclass(slots=True)
class Forest:
    roots: list[Node]
    nodes: dict[str, Node]

    @property
    def missing_parents(self) -> set[str]:
        """The parent span ids that orphans point at and that are not in the trace."""
        return {node.span["parent_span_id"] for node in self.nodes.values() if node.orphan}

    def walk(self) -> Iterable[Node]:
        """Every node once, parents before children."""
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def _order(span: dict[str, Any]) -> tuple[int, str]:
    return (span.get("start_time_unix_nano") or 0, span["span_id"])


def build(spans: Iterable[dict[str, Any]]) -> Forest:
    """Each span dict needs span_id, parent_span_id, start_time_unix_nano; the rest is carried."""
    nodes: dict[str, Node] = {}
    for span in spans:
        nodes[span["span_id"]] = Node(span=span)
    children: dict[str, list[Node]] = defaultdict(list)
    roots: list[Node] = []
    for node in nodes.values():
        parent = node.span.get("parent_span_id") or ""
        if not parent:
            roots.append(node)
        elif parent not in nodes or parent == node.span_id:
            node.orphan = parent not in nodes
            node.cycle = parent == node.span_id
            roots.append(node)
        else:
            children[parent].append(node)
    for parent_id, kids in children.items():
        kids.sort(key=lambda n: _order(n.span))
        nodes[parent_id].children = kids
    roots.sort(key=lambda n: _order(n.span))

    seen: set[str] = set()
    _mark(roots, seen)
    if len(seen) < len(nodes):
        # What is left hangs off a cycle: cut each cycle at its earliest span.
        for node in sorted((n for n in nodes.values() if n.span_id not in seen), key=lambda n: _order(n.span)):
            if node.span_id in seen:
                continue
            node.cycle = True
            parent = nodes[node.span["parent_span_id"]]
            parent.children = [c for c in parent.children if c is not node]
            roots.append(node)
            _mark([node], seen)
    forest = Forest(roots=roots, nodes=nodes)
    _annotate(forest)
    return forest


def _mark(start: list[Node], seen: set[str]) -> None:
    stack = list(start)
    while stack:
        node = stack.pop()
        if node.span_id in seen:
            continue
        seen.add(node.span_id)
        stack.extend(node.children)


def _has_usage(span: dict[str, Any]) -> bool:
    return span.get("input_tokens") is not None or span.get("output_tokens") is not None


def _annotate(forest: Forest) -> None:
    order = list(forest.walk())
    for node in order:  # parents first: depth and agent attribution flow down
        parent = node.span.get("parent_span_id")
        up = forest.nodes.get(parent) if parent and not (node.orphan or node.cycle) else None
        node.depth = up.depth + 1 if up else 0
        if node.span.get("kind") == "agent":
            node.agent = node.span.get("agent_name") or ""
            node.agent_span_id = node.span_id
        elif up and up.agent_span_id:
            node.agent, node.agent_span_id = up.agent, up.agent_span_id
        else:
            # No enclosing agent span: keep the agent the span names itself, if any.
            node.agent = node.span.get("agent_name") or ""
    for node in reversed(order):  # children first: usage flows up
        below = any(child.subtree_usage for child in node.children)
        own = _has_usage(node.span)
        node.billed = own and not below
        node.subtree_usage = own or below
        node.subtree_call = node.span.get("kind") in MODEL_CALL_KINDS or any(c.subtree_call for c in node.children)
    for node in order:  # parents first again: a billed ancestor covers the calls below it
        parent = node.span.get("parent_span_id")
        up = forest.nodes.get(parent) if parent and not (node.orphan or node.cycle) else None
        node.covered = bool(up and (up.covered or up.billed))


# --- Data quality ------------------------------------------------------------------------------

# Kinds of span (tracer/semconv.py Kind) that stand for one call to a model.
MODEL_CALL_KINDS = ("llm", "embedding")


def call_without_usage(node: Node) -> bool:
    """A model call that arrived without usage, counted once per call: a model-call span with no
    usage in its subtree, no model-call span below it (two instrumentations of one call count at
    the inner span) and no billed span above it (whose usage is this call's)."""
    return (
        node.span.get("kind") in MODEL_CALL_KINDS
        and not node.subtree_usage
        and not node.covered
        and not any(child.subtree_call for child in node.children)
    )


def framework(spans: Iterable[dict[str, Any]]) -> str:
    """The instrumentation scope a trace came from (`scope_name`, e.g.
    `openinference.instrumentation.langchain`): the scope of the most model-call spans (spans of a
    MODEL_CALL_KIND or carrying usage); a trace without any, the scope of the most spans. Ties go
    to the smaller name, so every worker picks the same; "" when no span names a scope."""
    calls: dict[str, int] = defaultdict(int)
    every: dict[str, int] = defaultdict(int)
    for span in spans:
        scope = span.get("scope_name") or ""
        if not scope:
            continue
        every[scope] += 1
        if span.get("kind") in MODEL_CALL_KINDS or _has_usage(span):
            calls[scope] += 1
    counts = calls or every
    return min(counts, key=lambda scope: (-counts[scope], scope)) if counts else ""


def quality(forest: Forest) -> dict[str, Any]:
    """What a trace's rollup says about how whole its data is (fields of the Trace row)."""
    missing = len(forest.missing_parents)
    return {
        "incomplete": missing > 0,
        "missing_parents": missing,
        "no_usage_count": sum(1 for node in forest.nodes.values() if call_without_usage(node)),
        "framework": framework(node.span for node in forest.nodes.values() if not node.synthetic),
    }


# The span id of the synthetic node; real span ids are 16 hex digits, so it never collides.
MISSING_PARENT_ID = "missing-parent"


def adopt_orphans(forest: Forest) -> Node | None:
    """Hang the orphans under one synthetic "missing parent" root instead of leaving them as extra
    roots (the trace page). Changes the forest in place: the orphans' subtrees move one level down,
    and the synthetic node is in `nodes` under MISSING_PARENT_ID so its children can be paged like
    any node's. Billing and agents are unchanged (the node carries no usage and is no agent);
    totals skip it. Returns the node, or None when nothing is orphaned."""
    orphans = [root for root in forest.roots if root.orphan]
    if not orphans:
        return None
    below = list(Forest(roots=orphans, nodes=forest.nodes).walk())
    node = Node(
        span={
            "span_id": MISSING_PARENT_ID,
            "parent_span_id": "",
            "name": "missing parent",
            "kind": "",
            "start_time_unix_nano": min(n.span.get("start_time_unix_nano") or 0 for n in below),
            "end_time_unix_nano": max(n.span.get("end_time_unix_nano") or 0 for n in below),
            # The ids the orphans point at, for the page to name.
            "missing_parents": sorted(forest.missing_parents),
        },
        children=orphans,
        synthetic=True,
        subtree_usage=any(n.subtree_usage for n in orphans),
        subtree_call=any(n.subtree_call for n in orphans),
    )
    for n in below:
        n.depth += 1
    forest.roots = sorted([r for r in forest.roots if not r.orphan] + [node], key=lambda n: _order(n.span))
    forest.nodes[MISSING_PARENT_ID] = node
    return node


# --- Rollups for the read API ------------------------------------------------------------


def _empty_totals() -> dict[str, Any]:
    return {**dict.fromkeys(TOKEN_FIELDS, 0), "cost": None, "unpriced_count": 0, "billed_count": 0, "span_count": 0}


def _add(totals: dict[str, Any], span: dict[str, Any], *, billed: bool) -> None:
    totals["span_count"] += 1
    if not billed:
        return
    totals["billed_count"] += 1
    for name in TOKEN_FIELDS:
        totals[name] += span.get(name) or 0
    cost = span.get("cost")
    if cost is None:
        totals["unpriced_count"] += 1
    else:
        totals["cost"] = (totals["cost"] or Decimal(0)) + Decimal(cost)


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for name in (*TOKEN_FIELDS, "unpriced_count", "billed_count", "span_count"):
        into[name] += other[name]
    if other["cost"] is not None:
        into["cost"] = (into["cost"] or Decimal(0)) + other["cost"]


# JSON encoders recurse: deeper than this, a subtree is served as a top-level entry that names
# the span it continues from, so a pathological chain cannot crash the response.
MAX_NESTING = 100


def node_totals(forest: Forest) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """For each span id: (its own billed totals, its subtree's), computed children first.

    Treat the dicts as read-only: spans without billed usage and leaves share them."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for node in reversed(list(forest.walk())):
        own = _empty_totals()
        if not node.synthetic:
            _add(own, node.span, billed=node.billed)
        if not node.children:
            out[node.span_id] = (own, own)
            continue
        subtree = dict(own)
        for child in node.children:
            _merge(subtree, out[child.span_id][1])
        out[node.span_id] = (own, subtree)
    return out


def nested(forest: Forest) -> list[dict[str, Any]]:
    """The tree as nested dicts, each with its own and its subtree's totals. Every span appears
    once; subtrees below MAX_NESTING levels are listed after the roots with `continued_from`."""
    sums = node_totals(forest)
    out: dict[str, dict[str, Any]] = {}
    continued: list[dict[str, Any]] = []
    for node in reversed(list(forest.walk())):
        kids = []
        for child in node.children:
            entry = out.pop(child.span_id)
            if child.depth % MAX_NESTING == 0:
                entry["continued_from"] = node.span_id
                continued.append(entry)
            else:
                kids.append(entry)
        own, subtree = sums[node.span_id]
        out[node.span_id] = {
            "span_id": node.span_id,
            "name": node.span.get("name", ""),
            "kind": node.span.get("kind", ""),
            "agent": node.agent,
            "billed": node.billed,
            "orphan": node.orphan,
            "cycle": node.cycle,
            "own": own,
            "subtree": subtree,
            "children": kids,
        }
    return [out[root.span_id] for root in forest.roots] + continued[::-1]


def totals(forest: Forest) -> dict[str, Any]:
    """Token and cost totals of the billed spans of a trace."""
    total = _empty_totals()
    for node in forest.nodes.values():
        if not node.synthetic:
            _add(total, node.span, billed=node.billed)
    return total


def breakdowns(forest: Forest) -> dict[str, Any]:
    """Totals by agent, by model and by kind, plus the agents' delegation hierarchy."""
    by_agent: dict[str, dict[str, Any]] = defaultdict(_empty_totals)
    by_model: dict[str, dict[str, Any]] = defaultdict(_empty_totals)
    by_kind: dict[str, dict[str, Any]] = defaultdict(_empty_totals)
    for node in forest.walk():
        if node.synthetic:
            continue
        span = node.span
        _add(by_agent[node.agent], span, billed=node.billed)
        _add(by_kind[span.get("kind") or "other"], span, billed=node.billed)
        if span.get("model"):
            _add(by_model[span["model"]], span, billed=node.billed)
    return {
        "totals": totals(forest),
        "by_agent": dict(by_agent),
        "by_model": dict(by_model),
        "by_kind": dict(by_kind),
        "agents": _agent_tree(forest),
    }


def _agent_tree(forest: Forest) -> list[dict[str, Any]]:
    """Agent spans nested by who delegated to whom (the nearest enclosing agent span)."""
    entries: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for node in forest.walk():
        if node.span.get("kind") != "agent":
            continue
        entry = {"span_id": node.span_id, "agent": node.agent, "sub_agents": []}
        entries[node.span_id] = entry
        parent_id = node.span.get("parent_span_id")
        parent = forest.nodes.get(parent_id) if parent_id and not (node.orphan or node.cycle) else None
        delegator = parent.agent_span_id if parent else ""
        (entries[delegator]["sub_agents"] if delegator in entries else roots).append(entry)
    return roots
