"""A research crew on Nemotron: an orchestrator that delegates to a researcher and an analyst
(concurrently, in a thread pool), then to a writer, with tools, four Nemotron models, and
reasoning on (`/think`) and off (`/no_think`).

    # against NVIDIA's API (needs NVIDIA_API_KEY), traced into a running Octotrace:
    OCTOTRACE_ENDPOINT=http://127.0.0.1:8000 OCTOTRACE_API_KEY=otk_... python -m examples.research_crew.crew
    # without NVIDIA_API_KEY it runs against the mock NIM (octotrace_testing.nim_mock, from
    # sdk/testing: requirements-dev.txt installs it).
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from openai import OpenAI

import octotrace
from octotrace_testing.nim_mock import NimMock

NVIDIA_BASE_URL = "https://integrate.api.nvidia.com/v1"
ORCHESTRATOR_MODEL = "nvidia/llama-3.1-nemotron-ultra-253b-v1"
RESEARCHER_MODEL = "nvidia/llama-3.3-nemotron-super-49b-v1.5"
ANALYST_MODEL = "nvidia/nemotron-3-nano-30b-a3b"
WRITER_MODEL = "nvidia/nvidia-nemotron-nano-9b-v2"
EMBEDDING_MODEL = "nvidia/llama-3.2-nv-embedqa-1b-v2"

DOCS = {
    "pricing": "Nemotron 3 Nano costs about $0.05 per 1M input tokens and $0.20 per 1M output tokens.",
    "caching": "Prefix caching bills repeated prompt prefixes at a discount on hosts that support it.",
    "latency": "A 30B-A3B mixture-of-experts model activates 3B parameters per token.",
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_docs",
        "description": "Search the internal notes about LLM serving.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
CALCULATOR_TOOL = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}


@octotrace.tool
def search_docs(query: str) -> str:
    hits = [text for key, text in DOCS.items() if key in query.lower()] or list(DOCS.values())[:1]
    return "\n".join(hits)


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@octotrace.tool
def calculator(expression: str) -> str:
    """Arithmetic only (+ - * / and numbers): never eval model output."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not arithmetic: {expression!r}")

    try:
        return str(value(ast.parse(expression, mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return f"error: {exc}"


def _tool_turn(client: OpenAI, model: str, messages: list[dict], tool: dict, run_tool, *, stream: bool) -> str:
    """One model turn that may call `tool`, the tool call, and the final answer."""
    if stream:
        calls: dict[int, dict] = {}
        with client.chat.completions.create(
            model=model, messages=messages, tools=[tool], stream=True, stream_options={"include_usage": True}
        ) as chunks:
            for chunk in chunks:
                for choice in chunk.choices:
                    for call in choice.delta.tool_calls or []:
                        entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        entry["id"] = call.id or entry["id"]
                        entry["name"] = (call.function and call.function.name) or entry["name"]
                        entry["arguments"] += (call.function and call.function.arguments) or ""
        tool_calls = list(calls.values())
    else:
        reply = client.chat.completions.create(model=model, messages=messages, tools=[tool])
        tool_calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in reply.choices[0].message.tool_calls or []
        ]
    if tool_calls:
        messages = [
            *messages,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in tool_calls
                ],
            },
        ]
        for call in tool_calls:
            result = run_tool(**json.loads(call["arguments"] or "{}"))
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    final = client.chat.completions.create(model=model, messages=messages)
    return final.choices[0].message.content or ""


@octotrace.agent
def researcher(client: OpenAI, task: str) -> str:
    client.embeddings.create(model=EMBEDDING_MODEL, input=[task], extra_body={"input_type": "query"})
    messages = [
        {"role": "system", "content": "/think\nYou are the researcher. Use search_docs, then answer with facts."},
        {"role": "user", "content": f"Research: {task} query=pricing"},
    ]
    return _tool_turn(client, RESEARCHER_MODEL, messages, SEARCH_TOOL, search_docs, stream=False)


@octotrace.agent
def analyst(client: OpenAI, task: str) -> str:
    messages = [
        {"role": "system", "content": "/no_think\nYou are the analyst. Use the calculator for every number."},
        {"role": "user", "content": f"Estimate the monthly cost of: {task} expression=1200000*30/1000000*0.2"},
    ]
    return _tool_turn(client, ANALYST_MODEL, messages, CALCULATOR_TOOL, calculator, stream=True)


@octotrace.agent
def writer(client: OpenAI, notes: str) -> str:
    text = []
    stream = client.chat.completions.create(
        model=WRITER_MODEL,
        messages=[
            {"role": "system", "content": "/no_think\nYou are the writer. Turn notes into a short report."},
            {"role": "user", "content": notes},
        ],
        stream=True,
    )
    for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
    return "".join(text)


def research_report(client: OpenAI, task: str, *, conversation_id: str | None = None) -> str:
    with octotrace.workflow("research_report", conversation_id=conversation_id), octotrace.agent("orchestrator"):
        system = {"role": "system", "content": "/think\nYou are the orchestrator. Split the task between agents."}
        plan = client.chat.completions.create(
            model=ORCHESTRATOR_MODEL, messages=[system, {"role": "user", "content": f"Plan: {task}"}]
        )
        # The researcher and the analyst work at the same time; context follows them into the pool.
        with ThreadPoolExecutor(max_workers=2) as pool:
            research = pool.submit(researcher, client, task)
            analysis = pool.submit(analyst, client, task)
            notes = f"{plan.choices[0].message.content}\n{research.result()}\n{analysis.result()}"
        draft = writer(client, notes)
        final = client.chat.completions.create(
            model=ORCHESTRATOR_MODEL,
            messages=[system, {"role": "user", "content": f"Plan: {task}"}, {"role": "user", "content": draft}],
        )
        return final.choices[0].message.content or ""


def run(*, runs: int = 1, task: str = "Nemotron inference cost for a 1.2M-token/day support bot") -> list[str]:
    """Run the crew `runs` times, against NVIDIA's API if NVIDIA_API_KEY is set, else the mock."""
    with ExitStack() as stack:
        if os.environ.get("NVIDIA_API_KEY"):
            client = OpenAI(base_url=NVIDIA_BASE_URL, api_key=os.environ["NVIDIA_API_KEY"])
        else:
            mock = stack.enter_context(NimMock())
            client = OpenAI(base_url=mock.base_url, api_key="nvapi-mock")
        return [research_report(client, task, conversation_id=f"demo-conversation-{i % 3}") for i in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    octotrace.init()  # OCTOTRACE_ENDPOINT / OCTOTRACE_API_KEY from the environment
    for report in run(runs=args.runs):
        print(report[:200])
    octotrace.shutdown()


if __name__ == "__main__":
    main()
