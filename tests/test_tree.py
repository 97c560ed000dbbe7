"""Call trees (tracer/tree.py) on plain span dicts, and the tree the API serves after ingest."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.factories import T0, TRACE, chat, ingest_spans, otlp_span, sid
from tracer import tree


def span(
    span_id: str,
    parent: str = "",
    *,
    start: int = 0,
    kind: str = "other",
    agent_name: str = "",
    model: str = "",
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cost: str | None = None,
) -> dict[str, Any]:
    return {
        "span_id": span_id,
        "parent_span_id": parent,
        "start_time_unix_nano": start,
        "name": f"span {span_id}",
        "kind": kind,
        "agent_name": agent_name,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost": None if cost is None else Decimal(cost),
    }


def llm(span_id: str, parent: str, *, start: int = 0, model: str = "m1", tokens: int = 100, cost: str | None = "1"):
    return span(
        span_id, parent, start=start, kind="llm", model=model, input_tokens=tokens, output_tokens=tokens, cost=cost
    )


def agent(span_id: str, parent: str = "", *, name: str, start: int = 0) -> dict[str, Any]:
    return span(span_id, parent, start=start, kind="agent", agent_name=name)


def walked(forest: tree.Forest) -> list[str]:
    return [node.span_id for node in forest.walk()]


def nested_ids(entries: list[dict[str, Any]]) -> list[str]:
    """Every span id in a nested() result, iteratively (trees here can be very deep)."""
    ids: list[str] = []
    stack = list(reversed(entries))
    while stack:
        entry = stack.pop()
        ids.append(entry["span_id"])
        stack.extend(reversed(entry["children"]))
    return ids


# --- Shape ------------------------------------------------------------------------------------


def test_it_nests_children_under_their_parent_in_start_order() -> None:
    forest = tree.build([span("c2", "r", start=3), span("r", start=1), span("c1", "r", start=2)])

    assert [root.span_id for root in forest.roots] == ["r"]
    assert [child.span_id for child in forest.roots[0].children] == ["c1", "c2"]
    assert walked(forest) == ["r", "c1", "c2"]
    assert [forest.nodes[s].depth for s in ("r", "c1", "c2")] == [0, 1, 1]


def test_it_keeps_an_orphan_flags_it_and_treats_it_as_a_root() -> None:
    forest = tree.build([span("r", start=1), span("o", "missing", start=2), span("k", "o", start=3)])

    assert [root.span_id for root in forest.roots] == ["r", "o"]
    orphan = forest.nodes["o"]
    assert orphan.orphan is True
    assert orphan.depth == 0
    assert forest.nodes["r"].orphan is False
    # Its own children stay under it and are not orphans.
    assert [child.span_id for child in orphan.children] == ["k"]
    assert forest.nodes["k"].orphan is False
    assert forest.nodes["k"].depth == 1
    entries = tree.nested(forest)
    assert [(e["span_id"], e["orphan"]) for e in entries] == [("r", False), ("o", True)]


def test_it_keeps_several_roots_in_start_order() -> None:
    forest = tree.build([span("b", start=20), span("a", start=10), span("a1", "a", start=11)])

    assert [root.span_id for root in forest.roots] == ["a", "b"]
    assert walked(forest) == ["a", "a1", "b"]
    assert [e["span_id"] for e in tree.nested(forest)] == ["a", "b"]


def test_a_two_span_cycle_does_not_hang_and_every_span_appears_once() -> None:
    spans = [span("a", "b", start=1), span("b", "a", start=2), span("c", "b", start=3)]

    forest = tree.build(spans)

    assert sorted(walked(forest)) == ["a", "b", "c"]
    assert sorted(nested_ids(tree.nested(forest))) == ["a", "b", "c"]
    # Broken at its earliest span, which becomes a root flagged `cycle`.
    assert [root.span_id for root in forest.roots] == ["a"]
    assert forest.nodes["a"].cycle is True
    assert forest.nodes["b"].cycle is False


def test_a_cycle_beside_a_healthy_tree_leaves_the_tree_alone() -> None:
    spans = [span("r", start=0), span("r1", "r", start=1), span("x", "y", start=2), span("y", "x", start=3)]

    forest = tree.build(spans)

    assert sorted(walked(forest)) == ["r", "r1", "x", "y"]
    assert [root.span_id for root in forest.roots] == ["r", "x"]
    assert (forest.nodes["r"].cycle, forest.nodes["x"].cycle) == (False, True)


def test_a_self_parent_does_not_hang_and_appears_once() -> None:
    forest = tree.build([span("s", "s", start=1), span("k", "s", start=2)])

    assert walked(forest) == ["s", "k"]
    assert nested_ids(tree.nested(forest)) == ["s", "k"]
    assert forest.nodes["s"].cycle is True
    assert forest.nodes["s"].orphan is False


def test_a_cycle_with_usage_is_billed_once_per_call() -> None:
    forest = tree.build([llm("a", "b", start=1), llm("b", "a", start=2)])

    totals = tree.breakdowns(forest)["totals"]
    assert totals["billed_count"] == 1
    assert totals["cost"] == Decimal("1")


def test_a_ten_thousand_deep_chain_builds_walks_and_nests() -> None:
    depth = 10_000
    spans = [span("s0", start=0)] + [span(f"s{i}", f"s{i - 1}", start=i) for i in range(1, depth)]
    spans.append(llm("leaf", f"s{depth - 1}", start=depth))

    forest = tree.build(spans)
    entries = tree.nested(forest)
    result = tree.breakdowns(forest)

    assert len(walked(forest)) == depth + 1
    assert forest.nodes["leaf"].depth == depth
    assert len(nested_ids(entries)) == depth + 1
    assert entries[0]["subtree"]["cost"] == Decimal("1")
    assert entries[0]["subtree"]["span_count"] == depth + 1
    assert result["totals"]["billed_count"] == 1


# --- Billing ------------------------------------------------------------------------------------


def test_it_bills_the_leaf_most_span_with_usage() -> None:
    forest = tree.build(
        [
            llm("framework", "", start=0),
            span("middle", "framework", start=1),
            llm("client", "middle", start=2),
            span("tool", "framework", start=3),
        ]
    )

    assert {s: n.billed for s, n in forest.nodes.items()} == {
        "framework": False,
        "middle": False,
        "client": True,
        "tool": False,
    }
    assert forest.nodes["middle"].subtree_usage is True
    assert forest.nodes["tool"].subtree_usage is False


def test_it_bills_a_span_whose_children_carry_no_usage() -> None:
    forest = tree.build([llm("call", "", start=0), span("http", "call", start=1)])

    assert forest.nodes["call"].billed is True


def test_a_span_with_only_output_tokens_counts_as_usage() -> None:
    forest = tree.build([llm("parent", ""), span("child", "parent", start=1, output_tokens=5)])

    assert (forest.nodes["parent"].billed, forest.nodes["child"].billed) == (False, True)


# --- Agents -------------------------------------------------------------------------------------


@pytest.fixture
def agents_forest() -> tree.Forest:
    """planner -> (llm p1, tool t1 -> llm t1c, researcher -> (llm r1, writer -> llm w1)), plus a
    loose llm span outside any agent that names its agent itself."""
    return tree.build(
        [
            agent("planner", name="planner", start=0),
            llm("p1", "planner", start=1, model="m1", cost="1"),
            span("t1", "planner", start=2, kind="tool"),
            llm("t1c", "t1", start=3, model="m2", cost="2"),
            agent("researcher", "planner", name="researcher", start=4),
            llm("r1", "researcher", start=5, model="m1", cost="4"),
            agent("writer", "researcher", name="writer", start=6),
            llm("w1", "writer", start=7, model="m2", cost=None),
            span("loose", "", start=8, kind="llm", agent_name="self-named", input_tokens=10, cost="8"),
        ]
    )


def test_each_span_belongs_to_its_nearest_enclosing_agent(agents_forest) -> None:
    agents = {s: n.agent for s, n in agents_forest.nodes.items()}

    assert agents == {
        "planner": "planner",
        "p1": "planner",
        "t1": "planner",
        "t1c": "planner",
        "researcher": "researcher",
        "r1": "researcher",
        "writer": "writer",
        "w1": "writer",
        "loose": "self-named",
    }


def test_sub_agents_nest_under_the_agent_that_delegated(agents_forest) -> None:
    result = tree.breakdowns(agents_forest)

    assert result["agents"] == [
        {
            "span_id": "planner",
            "agent": "planner",
            "sub_agents": [
                {
                    "span_id": "researcher",
                    "agent": "researcher",
                    "sub_agents": [{"span_id": "writer", "agent": "writer", "sub_agents": []}],
                }
            ],
        }
    ]


def test_breakdowns_total_billed_spans_by_agent_model_and_kind(agents_forest) -> None:
    result = tree.breakdowns(agents_forest)

    totals = result["totals"]
    assert totals["span_count"] == 9
    assert totals["billed_count"] == 5
    assert totals["unpriced_count"] == 1
    assert totals["cost"] == Decimal("15")
    assert totals["input_tokens"] == 4 * 100 + 10

    by_agent = {name: (t["cost"], t["billed_count"], t["span_count"]) for name, t in result["by_agent"].items()}
    assert by_agent == {
        "planner": (Decimal("3"), 2, 4),
        "researcher": (Decimal("4"), 1, 2),
        # Its only call is unpriced: NULL, not 0.
        "writer": (None, 1, 2),
        "self-named": (Decimal("8"), 1, 1),
    }
    assert result["by_agent"]["writer"]["unpriced_count"] == 1

    by_model = {name: (t["cost"], t["billed_count"]) for name, t in result["by_model"].items()}
    assert by_model == {"m1": (Decimal("5"), 2), "m2": (Decimal("2"), 2)}

    by_kind = {name: (t["cost"], t["span_count"]) for name, t in result["by_kind"].items()}
    assert by_kind == {
        "agent": (None, 3),
        "llm": (Decimal("15"), 5),
        "tool": (None, 1),
    }


def test_nested_gives_each_span_its_own_and_its_subtree_totals(agents_forest) -> None:
    planner, loose = tree.nested(agents_forest)

    assert planner["span_id"] == "planner"
    assert planner["own"]["cost"] is None
    assert planner["own"]["span_count"] == 1
    assert planner["subtree"]["cost"] == Decimal("7")
    assert planner["subtree"]["span_count"] == 8
    assert planner["subtree"]["billed_count"] == 4
    assert planner["subtree"]["unpriced_count"] == 1
    assert planner["subtree"]["input_tokens"] == 400

    p1, t1, researcher = planner["children"]
    assert (p1["span_id"], t1["span_id"], researcher["span_id"]) == ("p1", "t1", "researcher")
    assert p1["own"]["cost"] == Decimal("1") and p1["billed"] is True
    assert t1["own"]["cost"] is None and t1["subtree"]["cost"] == Decimal("2")
    assert researcher["subtree"]["cost"] == Decimal("4")
    assert researcher["agent"] == "researcher"
    (_, writer) = researcher["children"]
    assert writer["subtree"]["cost"] is None
    assert writer["subtree"]["unpriced_count"] == 1
    assert loose["subtree"]["cost"] == Decimal("8")


def test_subtree_totals_count_a_twice_instrumented_call_once() -> None:
    forest = tree.build([llm("outer", "", cost="3"), llm("inner", "outer", start=1, cost="3")])

    (outer,) = tree.nested(forest)

    assert outer["own"]["cost"] is None
    assert outer["own"]["billed_count"] == 0
    assert outer["subtree"]["cost"] == Decimal("3")
    assert outer["subtree"]["input_tokens"] == 100


# --- Through ingest and the API -------------------------------------------------------------


def detail(client, secret: str, trace_id: str = TRACE) -> dict[str, Any]:
    response = client.get(f"/api/v1/traces/{trace_id}", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_trace_whose_parent_is_missing_is_flagged_orphan_and_converges_once_it_arrives(
    client, project_a, key_a
) -> None:
    _, secret = key_a
    ingest_spans(
        project_a,
        otlp_span(sid(2), sid(1), name="chat", start=T0 + 10, attrs=chat(input=1000, output=10)),
        otlp_span(sid(3), sid(2), name="http", start=T0 + 20),
    )

    before = detail(client, secret)
    orphans = {s["span_id"]: s["orphan"] for s in before["spans"]}
    assert orphans == {sid(2): True, sid(3): False}
    assert [(e["span_id"], e["orphan"]) for e in before["tree"]] == [(sid(2), True)]
    assert before["trace"]["root_span_id"] == ""

    ingest_spans(project_a, otlp_span(sid(1), name="agent run", start=T0, attrs={"gen_ai.agent.name": "x"}))

    after = detail(client, secret)
    assert {s["span_id"]: s["orphan"] for s in after["spans"]} == {sid(1): False, sid(2): False, sid(3): False}
    (root,) = after["tree"]
    assert root["span_id"] == sid(1)
    assert [c["span_id"] for c in root["children"]] == [sid(2)]
    assert [c["span_id"] for c in root["children"][0]["children"]] == [sid(3)]
    assert after["trace"]["root_span_id"] == sid(1)
    assert after["trace"]["root_span_name"] == "agent run"
    assert {s["span_id"]: s["depth"] for s in after["spans"]} == {sid(1): 0, sid(2): 1, sid(3): 2}


# --- Completeness and data quality ------------------------------------------------------------


def test_orphans_hang_under_one_missing_parent_node_for_the_page() -> None:
    forest = tree.build(
        [
            span("r", start=1),
            span("o1", "gone", start=5),
            llm("k", "o1", start=6),
            span("o2", "gone", start=3),
            span("o3", "lost", start=9),
        ]
    )
    before = tree.totals(forest)
    node = tree.adopt_orphans(forest)

    assert node is not None and node.synthetic
    assert [root.span_id for root in forest.roots] == ["r", tree.MISSING_PARENT_ID]
    assert [child.span_id for child in node.children] == ["o2", "o1", "o3"]
    assert node.span["missing_parents"] == ["gone", "lost"]
    assert (node.span["start_time_unix_nano"], node.depth) == (3, 0)
    # The orphans' subtrees moved one level down; they are still flagged orphan.
    assert [forest.nodes[s].depth for s in ("o1", "k", "o2", "o3")] == [1, 2, 1, 1]
    assert all(forest.nodes[s].orphan for s in ("o1", "o2", "o3"))
    # Paging the node's children finds it by its id; totals do not count it as a span.
    assert forest.nodes[tree.MISSING_PARENT_ID] is node
    assert tree.totals(forest) == before
    own, subtree = tree.node_totals(forest)[tree.MISSING_PARENT_ID]
    assert (own["span_count"], subtree["span_count"], subtree["billed_count"]) == (0, 4, 1)
    assert tree.breakdowns(forest)["totals"] == before


def test_a_whole_tree_gets_no_missing_parent_node() -> None:
    forest = tree.build([span("r", start=1), span("c", "r", start=2)])
    assert tree.adopt_orphans(forest) is None
    assert [root.span_id for root in forest.roots] == ["r"]
    assert tree.quality(forest)["incomplete"] is False


def test_quality_counts_each_missing_parent_once() -> None:
    forest = tree.build([span("a", "gone"), span("b", "gone"), span("c", "lost"), span("d", "a"), span("s", "s")])
    got = tree.quality(forest)
    assert (got["incomplete"], got["missing_parents"]) == (True, 2)


@pytest.mark.parametrize(
    ("spans", "without_usage"),
    [
        # A call that came without usage.
        ([agent("a", name="x"), span("c", "a", kind="llm")], 1),
        # Two instrumentations of one call, neither with usage: one call.
        ([span("outer", kind="llm"), span("inner", "outer", kind="llm")], 1),
        # The outer span's usage is the inner call's (it is billed there).
        ([llm("outer", ""), span("inner", "outer", kind="llm")], 0),
        # The inner span carries the usage.
        ([span("outer", kind="llm"), llm("inner", "outer")], 0),
        # An embedding without usage is a model call too; a tool is not.
        ([span("e", kind="embedding"), span("t", kind="tool")], 1),
        ([llm("c1", ""), llm("c2", "")], 0),
    ],
)
def test_quality_counts_model_calls_without_usage_once_per_call(spans, without_usage) -> None:
    assert tree.quality(tree.build(spans))["no_usage_count"] == without_usage


def scoped(span_id: str, scope: str, *, kind: str = "other", usage: bool = False) -> dict[str, Any]:
    return {**span(span_id, kind=kind, input_tokens=1 if usage else None), "scope_name": scope}


def test_the_framework_is_the_scope_of_the_most_model_calls() -> None:
    spans = [
        *(scoped(f"a{i}", "corpus.scenario", kind="agent") for i in range(5)),
        scoped("c1", "openinference.instrumentation.openai", kind="llm"),
        scoped("c2", "openinference.instrumentation.openai", kind="embedding"),
        # Usage on a span whose kind is not known still makes it a call.
        scoped("c3", "other.lib", usage=True),
    ]
    assert tree.framework(spans) == "openinference.instrumentation.openai"


def test_the_framework_ties_go_to_the_smaller_name_and_without_calls_to_the_most_spans() -> None:
    assert tree.framework([scoped("1", "b", kind="llm"), scoped("2", "a", kind="llm")]) == "a"
    assert tree.framework([scoped("1", "b"), scoped("2", "b"), scoped("3", "a")]) == "b"
    assert tree.framework([scoped("1", "")]) == ""
    assert tree.framework([]) == ""
