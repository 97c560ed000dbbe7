"""workflow / agent / tool / step: decorators and context managers, on every kind of callable."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import parent_id, spans_by_name
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import octotrace
from octotrace import _budget


def only_span(exporter: InMemorySpanExporter):
    (span,) = exporter.get_finished_spans()
    return span


# -- the four kinds: names and attributes -------------------------------------------------------


@pytest.mark.parametrize(
    ("decorator", "span_name", "attributes"),
    [
        (
            octotrace.workflow,
            "invoke_workflow research",
            {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "research"},
        ),
        (
            octotrace.agent,
            "invoke_agent research",
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "research"},
        ),
        (
            octotrace.tool,
            "execute_tool research",
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "research", "gen_ai.tool.type": "function"},
        ),
        (octotrace.step, "research", {"octotrace.span.kind": "step"}),
    ],
)
def test_it_names_spans_after_the_function_per_genai_conventions(exporter, decorator, span_name, attributes):
    @decorator
    def research() -> int:
        return 42

    assert research() == 42
    assert research.__name__ == "research"
    span = only_span(exporter)
    assert span.name == span_name
    assert dict(span.attributes) == attributes
    assert span.kind is trace.SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET


def test_it_takes_a_name_with_or_without_the_keyword(exporter):
    @octotrace.agent(name="planner")
    def plan() -> None: ...

    @octotrace.agent("critic")
    def critique() -> None: ...

    @octotrace.agent()
    def write() -> None: ...

    plan(), critique(), write()
    assert [s.name for s in exporter.get_finished_spans()] == [
        "invoke_agent planner",
        "invoke_agent critic",
        "invoke_agent write",
    ]


def test_it_records_description_and_extra_attributes(exporter):
    @octotrace.agent(description="plans the work", attributes={"team": "red", "gen_ai.agent.name": "ignored"})
    def planner() -> None: ...

    @octotrace.tool(description="searches the docs")
    def search() -> None: ...

    @octotrace.step(description="tidy up", attributes={"n": 3})
    def tidy() -> None: ...

    planner(), search(), tidy()
    spans = spans_by_name(exporter)
    agent = spans["invoke_agent planner"].attributes
    assert agent["gen_ai.agent.description"] == "plans the work"
    assert agent["team"] == "red"
    assert agent["gen_ai.agent.name"] == "planner"  # the conventions' attributes win
    assert spans["execute_tool search"].attributes["gen_ai.tool.description"] == "searches the docs"
    assert spans["tidy"].attributes["octotrace.description"] == "tidy up"
    assert spans["tidy"].attributes["n"] == 3


def test_it_rejects_a_bad_budget_mode():
    with pytest.raises(ValueError, match="budget_mode"):
        octotrace.workflow("w", budget_usd=1, budget_mode="ignore")


def test_a_context_manager_needs_a_name():
    with pytest.raises(TypeError, match="needs a name"):
        with octotrace.agent():
            pass


# -- kinds of callables ---------------------------------------------------------------------------


def test_it_traces_async_functions(exporter):
    @octotrace.agent
    async def planner(x: int) -> int:
        await asyncio.sleep(0)
        assert trace.get_current_span().name == "invoke_agent planner"
        return x * 2

    assert asyncio.run(planner(21)) == 42
    assert only_span(exporter).name == "invoke_agent planner"


def test_a_generator_span_covers_the_whole_iteration(exporter):
    @octotrace.agent
    def stream(n: int) -> Iterator[int]:
        for i in range(n):
            assert trace.get_current_span().name == "invoke_agent stream"
            yield i
        return

    gen = stream(3)
    assert exporter.get_finished_spans() == ()  # nothing starts before the first item
    seen = []
    for item in gen:
        # The consumer's code between items is not inside the generator's span.
        assert not trace.get_current_span().is_recording()
        assert exporter.get_finished_spans() == ()
        seen.append(item)
    assert seen == [0, 1, 2]
    span = only_span(exporter)
    assert span.name == "invoke_agent stream"
    assert span.status.status_code is StatusCode.UNSET


def test_a_generator_closed_early_ends_its_span_without_error(exporter):
    cleaned = []

    @octotrace.step
    def numbers() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            cleaned.append(trace.get_current_span().name)

    gen = numbers()
    assert next(gen) == 0
    gen.close()
    assert cleaned == ["numbers"]  # the generator's cleanup still runs inside its span
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()


def test_a_generator_gets_values_sent_and_exceptions_thrown(exporter):
    @octotrace.step
    def echo() -> Iterator[str]:
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "key error"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("a") == "got a"
    assert gen.throw(KeyError("k")) == "got key error"
    gen.close()
    assert only_span(exporter).status.status_code is StatusCode.UNSET


def test_it_returns_a_generators_return_value(exporter):
    @octotrace.step
    def inner() -> Iterator[int]:
        yield 1
        return "done"

    def outer() -> Iterator[int]:
        result = yield from inner()
        yield result

    assert list(outer()) == [1, "done"]


def test_an_async_generator_span_covers_the_whole_iteration(exporter):
    @octotrace.agent
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            assert trace.get_current_span().name == "invoke_agent stream"
            yield i

    async def main() -> list[int]:
        seen = []
        async for item in stream(3):
            assert not trace.get_current_span().is_recording()
            seen.append(item)
        return seen

    assert asyncio.run(main()) == [0, 1, 2]
    assert only_span(exporter).name == "invoke_agent stream"


def test_an_async_generator_closed_early_ends_its_span(exporter):
    @octotrace.step
    async def numbers() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def main() -> None:
        gen = numbers()
        assert await gen.__anext__() == 0
        await gen.aclose()

    asyncio.run(main())
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.UNSET


def test_it_works_as_a_context_manager(exporter):
    with octotrace.agent("planner", attributes={"k": "v"}) as span:
        assert trace.get_current_span() is span
        with octotrace.tool("search"):
            pass
    spans = spans_by_name(exporter)
    assert spans["invoke_agent planner"].attributes["k"] == "v"
    assert parent_id(spans["execute_tool search"]) == spans["invoke_agent planner"].context.span_id
    assert not trace.get_current_span().is_recording()


def test_it_works_as_an_async_context_manager(exporter):
    async def main() -> None:
        async with octotrace.workflow("w") as span:
            await asyncio.sleep(0)
            assert trace.get_current_span() is span

    asyncio.run(main())
    assert only_span(exporter).name == "invoke_workflow w"


def test_one_context_manager_instance_can_be_reused_and_nested(exporter):
    section = octotrace.step("section")
    with section:
        with section:
            pass
    with section:
        pass
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["section"] * 3
    inner, outer, _ = spans
    assert parent_id(inner) == outer.context.span_id


def test_methods_can_be_decorated(exporter):
    class Crew:
        @octotrace.agent
        def run(self, task: str) -> str:
            return task.upper()

    assert Crew().run("go") == "GO"
    assert only_span(exporter).name == "invoke_agent run"


# -- errors ---------------------------------------------------------------------------------------


def assert_failed(span, exc_type: type[BaseException], message: str) -> None:
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == f"{exc_type.__name__}: {message}"
    assert span.attributes["error.type"] == exc_type.__qualname__
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == exc_type.__name__
    assert event.attributes["exception.message"] == message


def test_it_records_and_reraises_exceptions_of_functions(exporter):
    @octotrace.tool
    def broken() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        broken()
    assert_failed(only_span(exporter), ValueError, "bad input")


def test_it_records_and_reraises_exceptions_of_async_functions(exporter):
    @octotrace.agent
    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError, match="model down"):
        asyncio.run(broken())
    assert_failed(only_span(exporter), RuntimeError, "model down")


def test_it_records_and_reraises_exceptions_of_generators(exporter):
    @octotrace.step
    def broken() -> Iterator[int]:
        yield 1
        raise KeyError("missing")

    gen = broken()
    assert next(gen) == 1
    with pytest.raises(KeyError):
        next(gen)
    assert_failed(only_span(exporter), KeyError, "'missing'")


def test_it_records_and_reraises_exceptions_of_async_generators(exporter):
    @octotrace.step
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise LookupError("gone")

    async def main() -> None:
        async for _ in broken():
            pass

    with pytest.raises(LookupError, match="gone"):
        asyncio.run(main())
    assert_failed(only_span(exporter), LookupError, "gone")


def test_it_records_and_reraises_exceptions_in_context_managers(exporter):
    with pytest.raises(ZeroDivisionError):
        with octotrace.workflow("w"):
            1 / 0  # noqa: B018
    assert_failed(only_span(exporter), ZeroDivisionError, "division by zero")


def test_an_error_recorded_on_a_child_does_not_mark_a_parent_that_handled_it(exporter):
    @octotrace.tool
    def flaky() -> None:
        raise TimeoutError("slow")

    @octotrace.agent
    def careful() -> str:
        try:
            flaky()
        except TimeoutError:
            return "fallback"
        return "ok"

    assert careful() == "fallback"
    spans = spans_by_name(exporter)
    assert spans["execute_tool flaky"].status.status_code is StatusCode.ERROR
    assert spans["invoke_agent careful"].status.status_code is StatusCode.UNSET


# -- nesting and context ---------------------------------------------------------------------------


def test_it_nests_spans_along_the_call_chain(exporter):
    @octotrace.tool
    def search() -> str:
        return "docs"

    @octotrace.agent
    def researcher() -> str:
        return search()

    @octotrace.workflow
    def research() -> str:
        with octotrace.step("prepare"):
            pass
        return researcher()

    research()
    spans = spans_by_name(exporter)
    root = spans["invoke_workflow research"]
    assert root.parent is None
    assert parent_id(spans["prepare"]) == root.context.span_id
    assert parent_id(spans["invoke_agent researcher"]) == root.context.span_id
    assert parent_id(spans["execute_tool search"]) == spans["invoke_agent researcher"].context.span_id
    assert len({s.context.trace_id for s in spans.values()}) == 1


def test_the_conversation_id_is_inherited_by_every_span_below(exporter):
    tracer = trace.get_tracer("app")

    @octotrace.tool
    def search() -> None:
        with tracer.start_as_current_span("app span"):
            pass

    @octotrace.agent
    def researcher() -> None:
        search()

    @octotrace.workflow(conversation_id="conv-1")
    def chat() -> None:
        researcher()

    chat()
    researcher()  # outside the conversation
    spans = exporter.get_finished_spans()
    inside, outside = spans[:4], spans[4:]
    assert {s.name for s in inside} == {
        "app span",
        "execute_tool search",
        "invoke_agent researcher",
        "invoke_workflow chat",
    }
    assert all(s.attributes["gen_ai.conversation.id"] == "conv-1" for s in inside)
    assert all("gen_ai.conversation.id" not in s.attributes for s in outside)


def test_an_inner_conversation_id_wins_inside_its_span(exporter):
    with octotrace.workflow("w", conversation_id="outer"):
        with octotrace.agent("a", conversation_id="inner"):
            with octotrace.tool("t"):
                pass
        with octotrace.tool("u"):
            pass
    spans = spans_by_name(exporter)
    ids = {name: span.attributes["gen_ai.conversation.id"] for name, span in spans.items()}
    assert ids == {
        "execute_tool t": "inner",
        "invoke_agent a": "inner",
        "execute_tool u": "outer",
        "invoke_workflow w": "outer",
    }


def test_sub_agents_in_a_thread_pool_land_under_their_parent(exporter):
    @octotrace.agent
    def sub_agent(i: int) -> int:
        with octotrace.tool("lookup"):
            return i * i

    @octotrace.workflow(conversation_id="c")
    def crew() -> list[int]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(sub_agent, i) for i in range(3)]
            mapped = list(pool.map(sub_agent, range(3, 5)))
        return [f.result() for f in futures] + mapped

    assert crew() == [0, 1, 4, 9, 16]
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "invoke_workflow crew"]
    agents = [s for s in spans if s.name == "invoke_agent sub_agent"]
    tools = [s for s in spans if s.name == "execute_tool lookup"]
    assert len(agents) == 5 and len(tools) == 5
    assert all(parent_id(a) == root.context.span_id for a in agents)
    assert {parent_id(t) for t in tools} == {a.context.span_id for a in agents}
    assert all(s.attributes["gen_ai.conversation.id"] == "c" for s in spans)


def test_asyncio_gather_tasks_land_under_their_parent(exporter):
    @octotrace.agent
    async def sub_agent(i: int) -> int:
        await asyncio.sleep(0.001 * (3 - i))
        return i

    @octotrace.workflow
    async def crew() -> list[int]:
        return await asyncio.gather(*(sub_agent(i) for i in range(3)))

    assert asyncio.run(crew()) == [0, 1, 2]
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "invoke_workflow crew"]
    agents = [s for s in spans if s.name == "invoke_agent sub_agent"]
    assert len(agents) == 3
    assert all(parent_id(a) == root.context.span_id for a in agents)


# -- tool content ---------------------------------------------------------------------------------


def test_tool_arguments_and_result_are_recorded_with_content_capture(content_exporter):
    @octotrace.tool
    def search(query: str, limit: int = 3) -> list[str]:
        return [query] * limit

    @octotrace.tool
    async def fetch(url: str) -> str:
        return f"<html>{url}</html>"

    search("nemotron", limit=2)
    asyncio.run(fetch("https://example.com"))
    spans = spans_by_name(content_exporter)
    attrs = spans["execute_tool search"].attributes
    assert json.loads(attrs["gen_ai.tool.call.arguments"]) == {"query": "nemotron", "limit": 2}
    assert json.loads(attrs["gen_ai.tool.call.result"]) == ["nemotron", "nemotron"]
    attrs = spans["execute_tool fetch"].attributes
    assert json.loads(attrs["gen_ai.tool.call.arguments"]) == {"url": "https://example.com"}
    assert attrs["gen_ai.tool.call.result"] == "<html>https://example.com</html>"


def test_tool_content_is_not_recorded_by_default(exporter):
    @octotrace.tool
    def search(query: str) -> str:
        return "secret result"

    search("secret query")
    attrs = only_span(exporter).attributes
    assert "gen_ai.tool.call.arguments" not in attrs
    assert "gen_ai.tool.call.result" not in attrs


def test_non_json_tool_values_are_recorded_as_text(content_exporter):
    class Doc:
        def __str__(self) -> str:
            return "doc#1"

    @octotrace.tool
    def load(doc: Doc) -> Doc:
        return doc

    load(Doc())
    attrs = only_span(content_exporter).attributes
    assert json.loads(attrs["gen_ai.tool.call.arguments"]) == {"doc": "doc#1"}
    assert json.loads(attrs["gen_ai.tool.call.result"]) == "doc#1"


# -- budgets --------------------------------------------------------------------------------------


def test_a_spent_token_budget_raises_before_the_next_call(exporter):
    with octotrace.workflow("w", budget_tokens=10):
        _budget.charge(model="x", input_tokens=20, output_tokens=0)
        with pytest.raises(octotrace.BudgetExceeded) as raised:
            _budget.check_before_call()
    assert raised.value.budget.spent_tokens == 20
    attrs = only_span(exporter).attributes
    assert attrs["octotrace.budget.tokens"] == 10
    assert attrs["octotrace.budget.spent_tokens"] == 20
    assert attrs["octotrace.budget.unpriced_calls"] == 1
    assert attrs["octotrace.budget.exceeded"] is True


def test_a_budget_in_warn_mode_logs_once_and_goes_on(exporter, caplog):
    caplog.set_level(logging.WARNING, logger="octotrace")

    @octotrace.agent(budget_tokens=10, budget_mode="warn")
    def chatty() -> None:
        for _ in range(3):
            _budget.check_before_call()
            _budget.charge(model="x", input_tokens=8, output_tokens=4)

    chatty()
    warnings = [r for r in caplog.records if r.name == "octotrace" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "budget of 'chatty' exhausted" in warnings[0].getMessage()
    attrs = only_span(exporter).attributes
    assert attrs["octotrace.budget.spent_tokens"] == 36
    assert attrs["octotrace.budget.exceeded"] is True


def test_a_usd_budget_is_priced_and_recorded(exporter):
    @octotrace.agent(budget_usd="0.50")
    def priced() -> None:
        _budget.charge(model="x", input_tokens=5, output_tokens=5)

    priced()
    attrs = only_span(exporter).attributes
    assert attrs["octotrace.budget.usd"] == 0.5
    assert attrs["octotrace.budget.spent_usd"] == 0.0
    assert attrs["octotrace.budget.spent_tokens"] == 10


def test_budgets_follow_the_work_into_generators_threads_and_tasks(exporter):
    @octotrace.step
    def worker() -> int:
        return len(_budget.active())

    @octotrace.agent(budget_tokens=100)
    def streaming() -> Iterator[int]:
        yield len(_budget.active())
        yield len(_budget.active())

    @octotrace.agent(budget_tokens=100)
    async def in_tasks() -> list[int]:
        async def task() -> int:
            return len(_budget.active())

        return await asyncio.gather(task(), task())

    with octotrace.workflow("w", budget_tokens=1000):
        outside = []
        for depth in streaming():
            outside.append(len(_budget.active()))
            assert depth == 2
        assert outside == [1, 1]  # the generator's budget is not in force between items
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(lambda _: worker(), range(2))) == [1, 1]
        assert asyncio.run(in_tasks()) == [2, 2]
    assert _budget.active() == ()


def test_no_budget_without_a_limit(exporter):
    with octotrace.workflow("w"):
        assert _budget.active() == ()
    assert "octotrace.budget.spent_tokens" not in only_span(exporter).attributes
