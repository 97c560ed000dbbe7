"""Tests for the deterministic mock NIM server (real HTTP, real clients, numbers computed by hand)."""

from __future__ import annotations

import base64
import json
import math
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from octotrace_testing.nim_mock import NimMock

ULTRA = "nvidia/llama-3.1-nemotron-ultra-253b-v1"
SUPER = "nvidia/llama-3.3-nemotron-super-49b-v1.5"
NANO = "nvidia/nemotron-3-nano-30b-a3b"
EMBED = "nvidia/llama-3.2-nv-embedqa-1b-v2"
OLD = "nvidia/llama-3.1-nemotron-70b-instruct"


def tok(s: str | None) -> int:
    return math.ceil(len(s) / 4) if s else 0


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@pytest.fixture
def mock() -> Iterator[NimMock]:
    with NimMock() as m:
        yield m


def post(
    mock: NimMock, path: str, body: Any, *, raw: bytes | None = None, key: str | None = None
) -> tuple[int, bytes, str]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(mock.base_url + path, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def chat(mock: NimMock, body: dict[str, Any]) -> dict[str, Any]:
    status, data, _ = post(mock, "/chat/completions", body)
    assert status == 200, data
    return json.loads(data)


def sse(mock: NimMock, body: dict[str, Any]) -> list[Any]:
    status, data, ctype = post(mock, "/chat/completions", body)
    assert status == 200 and ctype.startswith("text/event-stream")
    events = [line[len("data: ") :] for line in data.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


SYSTEM_THINK = {"role": "system", "content": "/think\nBe brief."}  # 4 + tok(system)=2 + tok(16 chars)=4 -> 10
USER_HI = {"role": "user", "content": "Hi there"}  # 4 + 1 + 2 -> 7


def test_models_endpoint(mock: NimMock) -> None:
    with urllib.request.urlopen(mock.base_url + "/models", timeout=10) as resp:
        ids = {m["id"] for m in json.loads(resp.read())["data"]}
    assert {ULTRA, SUPER, NANO, EMBED, "nvidia/nvidia-nemotron-nano-9b-v2", OLD} <= ids


def test_non_stream_usage_with_reasoning(mock: NimMock) -> None:
    body = {"model": ULTRA, "messages": [SYSTEM_THINK, USER_HI]}
    reply = chat(mock, body)
    msg, usage = reply["choices"][0]["message"], reply["usage"]
    assert usage["prompt_tokens"] == 3 + 10 + 7
    reasoning = msg["reasoning_content"]
    assert reasoning and msg["content"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == tok(reasoning)
    assert usage["completion_tokens"] == tok(msg["content"]) + tok(reasoning)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["created"] == 1750000000 and reply["id"].startswith("chatcmpl-")
    assert mock.requests == [body]
    # Deterministic: a second instance answers the same body with the same text and id.
    with NimMock() as other:
        again = chat(other, body)
    assert again["id"] == reply["id"] and again["choices"] == reply["choices"]


def test_reasoning_off_and_name_tokens(mock: NimMock) -> None:
    messages = [
        {"role": "system", "content": "/think"},  # 4 + 2 + 2 = 8
        {"role": "developer", "content": "/no_think"},  # 4 + 3 + 3 = 10, switches it off again
        {"role": "user", "content": "Hello", "name": "alice"},  # 4 + 1 + 2 + 2 = 9
    ]
    reply = chat(mock, {"model": NANO, "messages": messages})
    msg, usage = reply["choices"][0]["message"], reply["usage"]
    assert "reasoning_content" not in msg
    assert usage["prompt_tokens"] == 3 + 8 + 10 + 9
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0
    assert usage["completion_tokens"] == tok(msg["content"])


def test_different_requests_get_different_lengths(mock: NimMock) -> None:
    lengths = {
        chat(mock, {"model": NANO, "messages": [{"role": "user", "content": f"q{i}"}]})["usage"]["completion_tokens"]
        for i in range(8)
    }
    assert len(lengths) > 1


def test_cached_tokens_on_shared_prefix(mock: NimMock) -> None:
    system = {"role": "system", "content": "x" * 100}  # 4 + 2 + 25 = 31
    first = chat(mock, {"model": SUPER, "messages": [system, USER_HI]})
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    answer = first["choices"][0]["message"]["content"]
    follow = [system, USER_HI, {"role": "assistant", "content": answer}, {"role": "user", "content": "More"}]
    second = chat(mock, {"model": SUPER, "messages": follow})
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 16 * ((31 + 7) // 16)  # 32
    # The same request again: only a run of fewer than all messages counts -> the system message.
    repeat = chat(mock, {"model": SUPER, "messages": [system, USER_HI]})
    assert repeat["usage"]["prompt_tokens_details"]["cached_tokens"] == 16
    # Caches are per model and per instance.
    other_model = chat(mock, {"model": NANO, "messages": follow})
    assert other_model["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    with NimMock() as fresh:
        assert chat(fresh, {"model": SUPER, "messages": follow})["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_stream_chunk_order_with_usage(mock: NimMock) -> None:
    body = {"model": ULTRA, "messages": [SYSTEM_THINK, USER_HI]}
    full = chat(mock, body)
    chunks = sse(mock, {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    kinds = []
    for c in chunks[1:-2]:
        (key,) = [k for k in c["choices"][0]["delta"] if k != "role"]
        kinds.append(key)
    n_reason = kinds.count("reasoning_content")
    assert n_reason > 0 and kinds == ["reasoning_content"] * n_reason + ["content"] * (len(kinds) - n_reason)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 20
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == full["id"] for c in chunks)
    msg = full["choices"][0]["message"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks[:-1])
    assert (text, reasoning) == (msg["content"], msg["reasoning_content"])
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == full["usage"]["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0  # 1 of 2 messages seen: 10 tokens -> 0 blocks


def test_stream_without_include_usage_sends_no_usage(mock: NimMock) -> None:
    chunks = sse(mock, {"model": NANO, "messages": [USER_HI], "stream": True})
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c.get("usage") is None for c in chunks)
    assert all(c["choices"] for c in chunks)


def test_stream_with_openai_client(mock: NimMock) -> None:
    client = openai.OpenAI(base_url=mock.base_url, api_key="x")
    stream = client.chat.completions.create(
        model=SUPER, messages=[SYSTEM_THINK, USER_HI], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 20
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "Search the docs.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "other", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}},
    },
]


def test_tool_call_turn_then_final_answer(mock: NimMock) -> None:
    system = {"role": "system", "content": "/no_think tools"}  # 4 + 2 + 4 = 10
    user = {"role": "user", "content": "Find query=nemotron-pricing now"}  # 4 + 1 + 8 = 13
    first = chat(mock, {"model": NANO, "messages": [system, user], "tools": TOOLS})
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "search_docs"
    assert json.loads(call["function"]["arguments"]) == {"query": "nemotron-pricing", "limit": 1}
    usage = first["usage"]
    assert usage["prompt_tokens"] == 3 + 10 + 13 + tok(compact(TOOLS))
    assert usage["completion_tokens"] == tok(compact(choice["message"]["tool_calls"]))

    assistant = {"role": "assistant", "content": None, "tool_calls": choice["message"]["tool_calls"]}
    tool_msg = {"role": "tool", "tool_call_id": call["id"], "content": '{"hits": 3}'}
    second = chat(mock, {"model": NANO, "messages": [system, user, assistant, tool_msg], "tools": TOOLS})
    final = second["choices"][0]
    assert final["finish_reason"] == "stop" and final["message"]["content"] and "tool_calls" not in final["message"]
    expected_prompt = (
        3
        + 10
        + 13
        + (4 + tok("assistant") + tok(compact(assistant["tool_calls"])))
        + (4 + tok("tool") + tok('{"hits": 3}') + tok(call["id"]))
        + tok(compact(TOOLS))
    )
    assert second["usage"]["prompt_tokens"] == expected_prompt
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 16  # [system, user] = 23 tokens


def test_tool_choice_named_none_and_default_value(mock: NimMock) -> None:
    user = {"role": "user", "content": "no pairs here"}
    named = chat(
        mock,
        {
            "model": NANO,
            "messages": [user],
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "other"}},
        },
    )
    (call,) = named["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "other" and json.loads(call["function"]["arguments"]) == {"x": "example"}
    none = chat(mock, {"model": NANO, "messages": [user], "tools": TOOLS, "tool_choice": "none"})
    assert none["choices"][0]["finish_reason"] == "stop"


def test_streamed_tool_call_with_openai_client(mock: NimMock) -> None:
    client = openai.OpenAI(base_url=mock.base_url, api_key="x")
    messages: Any = [{"role": "user", "content": "calc query=2+2"}]
    chunks = list(client.chat.completions.create(model=NANO, messages=messages, tools=TOOLS, stream=True))
    pieces = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].function.name == "search_docs" and pieces[0].id.startswith("call_")
    assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"query": "2+2", "limit": 1}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_embeddings_float_and_base64(mock: NimMock) -> None:
    inputs = ["Nemotron inference cost", "hello"]
    status, data, _ = post(mock, "/embeddings", {"model": EMBED, "input": inputs})
    assert status == 200
    floats = json.loads(data)
    assert [len(d["embedding"]) for d in floats["data"]] == [32, 32]
    assert floats["usage"] == {"prompt_tokens": tok(inputs[0]) + tok(inputs[1]), "total_tokens": 8}
    assert floats["data"][0]["embedding"] != floats["data"][1]["embedding"]
    _, data64, _ = post(mock, "/embeddings", {"model": EMBED, "input": inputs, "encoding_format": "base64"})
    b64 = json.loads(data64)
    for f, b in zip(floats["data"], b64["data"], strict=True):
        assert list(struct.unpack("<32f", base64.b64decode(b["embedding"]))) == f["embedding"]
    client = openai.OpenAI(base_url=mock.base_url, api_key="x")
    resp = client.embeddings.create(model=EMBED, input="hello")
    assert resp.data[0].embedding == pytest.approx(floats["data"][1]["embedding"])
    assert resp.usage.prompt_tokens == 2


def test_errors(mock: NimMock) -> None:
    status, data, _ = post(mock, "/chat/completions", None, raw=b"{not json")
    assert status == 400 and "error" in json.loads(data)
    status, data, _ = post(mock, "/chat/completions", {"messages": [USER_HI]})
    assert status == 400 and json.loads(data)["error"]["param"] == "model"
    status, data, _ = post(mock, "/chat/completions", {"model": NANO})
    assert status == 400 and json.loads(data)["error"]["param"] == "messages"
    status, data, _ = post(mock, "/chat/completions", {"model": "nvidia/unknown", "messages": [USER_HI]})
    assert status == 404 and json.loads(data)["error"]["code"] == "model_not_found"
    status, _, _ = post(mock, "/embeddings", {"model": NANO, "input": "x"})
    assert status == 400
    client = openai.OpenAI(base_url=mock.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nvidia/unknown", messages=[{"role": "user", "content": "x"}])


def test_api_key_required() -> None:
    with NimMock(api_key="nvapi-secret") as mock:
        assert post(mock, "/chat/completions", {"model": NANO, "messages": [USER_HI]})[0] == 401
        status, data, _ = post(mock, "/chat/completions", {"model": NANO, "messages": [USER_HI]}, key="wrong")
        assert status == 401 and json.loads(data)["error"]["code"] == "invalid_api_key"
        assert post(mock, "/chat/completions", {"model": NANO, "messages": [USER_HI]}, key="nvapi-secret")[0] == 200
        bad = openai.OpenAI(base_url=mock.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=mock.base_url, api_key="nvapi-secret")
        assert any(m.id == ULTRA for m in good.models.list())


def _assert_think_tags(reply: dict[str, Any]) -> None:
    msg, usage = reply["choices"][0]["message"], reply["usage"]
    assert "reasoning_content" not in msg
    assert msg["content"].startswith("<think>") and "</think>" in msg["content"]
    assert "completion_tokens_details" not in usage
    assert usage["completion_tokens"] == tok(msg["content"])


def test_think_tags_mode() -> None:
    body = {"model": ULTRA, "messages": [SYSTEM_THINK, USER_HI]}
    with NimMock(think_tags=True) as mock:
        _assert_think_tags(chat(mock, body))
        chunks = sse(mock, {**body, "stream": True, "stream_options": {"include_usage": True}})
        assert not any("reasoning_content" in c["choices"][0]["delta"] for c in chunks[:-1])
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]).startswith("<think>")
        # Reasoning off: plain content even in think-tag mode.
        off = chat(mock, {"model": ULTRA, "messages": [USER_HI]})
        assert "<think>" not in off["choices"][0]["message"]["content"]


def test_older_model_uses_think_tags(mock: NimMock) -> None:
    _assert_think_tags(chat(mock, {"model": OLD, "messages": [SYSTEM_THINK, USER_HI]}))


def test_before_reply_holds_chat_replies_until_released() -> None:
    release = threading.Event()
    replies: list[dict[str, Any]] = []
    with NimMock(before_reply=lambda: release.wait(timeout=30)) as held:

        def call(n: int) -> None:
            replies.append(chat(held, {"model": NANO, "messages": [{"role": "user", "content": f"q{n}"}]}))

        calls = [threading.Thread(target=call, args=(n,)) for n in range(2)]
        for t in calls:
            t.start()
        # Both requests reached the mock (it records them before holding) ...
        deadline = time.monotonic() + 30
        while len(held.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(held.requests) == 2
        # ... and neither was answered: the replies wait for the release.
        assert replies == [] and all(t.is_alive() for t in calls)
        release.set()
        for t in calls:
            t.join(timeout=30)
    assert len(replies) == 2 and all(r["object"] == "chat.completion" for r in replies)


def test_a_broken_hold_is_answered_as_a_server_error() -> None:
    barrier = threading.Barrier(2)
    barrier.abort()
    with NimMock(before_reply=barrier.wait) as held:
        status, data, _ = post(held, "/chat/completions", {"model": NANO, "messages": [USER_HI]})
    assert status == 500 and b"BrokenBarrierError" in data


def test_python_m_entry_point() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "octotrace_testing.nim_mock", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"http://127.0.0.1:{port}/v1"
        with urllib.request.urlopen(line + "/models", timeout=10) as resp:
            assert any(m["id"] == EMBED for m in json.loads(resp.read())["data"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
