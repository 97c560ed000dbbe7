"""Deterministic mock of an NVIDIA NIM (OpenAI-compatible) endpoint, stdlib only.

Used by demos and tests so that token accounting can be checked against numbers computed by hand.
The token rules are the ones of the mock that produced the OTLP fixtures (section "Mock NIM endpoint"
of ``tests/fixtures/otlp/README.md``), so traces recorded against this server and the corpus agree:

* ``tok(s) = ceil(len(s) / 4)`` (0 for empty)
* message tokens = ``4 + tok(role) + tok(content) + tok(name)`` (+ tool_calls JSON / tool_call_id)
* ``prompt_tokens = 3 + sum(message tokens)`` (+ ``tok(json(tools))``)
* reasoning (``/think`` in a system/developer message) is counted inside ``completion_tokens``
* ``cached_tokens`` model block-wise (16 tokens) prefix caching per model, per server instance

Python use::

    with NimMock() as mock:
        client = openai.OpenAI(base_url=mock.base_url, api_key="x")

Command line: ``python -m octotrace_testing.nim_mock [--host 127.0.0.1] [--port 8001]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CREATED = 1750000000  # fixed so that replies are byte-for-byte reproducible
EMBED_DIMS = 32
CHAT_MODELS = (
    "nvidia/llama-3.1-nemotron-ultra-253b-v1",
    "nvidia/llama-3.3-nemotron-super-49b-v1.5",
    "nvidia/nemotron-3-nano-30b-a3b",
    "nvidia/nvidia-nemotron-nano-9b-v2",
    "nvidia/llama-3.1-nemotron-70b-instruct",
)
EMBEDDING_MODELS = ("nvidia/llama-3.2-nv-embedqa-1b-v2",)
# Older Nemotron releases put reasoning inline as <think>...</think> and report no reasoning_tokens;
# the SDK has to estimate it, so the mock reproduces that for these models.
THINK_TAG_MODELS = frozenset({"nvidia/llama-3.1-nemotron-70b-instruct"})

_WORDS = (
    "nemotron inference tokens latency throughput batch cache prefix budget cost agent tool plan "
    "answer context window gpu memory kernel request stream reply model route trace span metric "
    "estimate daily support query result summary check"
).split()
_PAIR_RE = re.compile(r"""(\w+)=("[^"]*"|'[^']*'|\S+)""")


def tok(s: str | None) -> int:
    """The mock's tokenizer: one token per 4 characters, rounded up."""
    return math.ceil(len(s) / 4) if s else 0


def _dumps(obj: Any) -> str:
    # Compact and key-order preserving: the same JSON is used for ids, hashing and token counts.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _text(content: Any) -> str:
    """Content as text: plain strings, or the text parts of a multi-part content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def message_tokens(msg: dict[str, Any]) -> int:
    n = 4 + tok(msg.get("role")) + tok(_text(msg.get("content"))) + tok(msg.get("name"))
    if msg.get("role") == "assistant" and msg.get("tool_calls"):
        n += tok(_dumps(msg["tool_calls"]))
    if msg.get("role") == "tool":
        n += tok(msg.get("tool_call_id"))
    return n


def reasoning_on(messages: list[dict[str, Any]]) -> bool:
    """``/think`` in a system/developer message switches reasoning on, a later ``/no_think`` off."""
    on = False
    for m in messages:
        if m.get("role") not in ("system", "developer"):
            continue
        text = _text(m.get("content"))
        think, no_think = text.rfind("/think"), text.rfind("/no_think")
        if think > no_think:
            on = True
        elif no_think > think:
            on = False
    return on


def _pseudo_text(seed: str, base: int, spread: int) -> str:
    """A few words chosen by hashing ``seed``; the word count varies so token counts differ."""
    out: list[str] = []
    digest = hashlib.sha256(seed.encode()).digest()
    count = base + digest[0] % spread
    i = 0
    while len(out) < count:
        block = hashlib.sha256(digest + i.to_bytes(4, "big")).digest()
        out.extend(_WORDS[b % len(_WORDS)] for b in block)
        i += 1
    words = out[:count]
    return " ".join(words).capitalize() + "."


def _tool_arguments(tool: dict[str, Any], user_text: str) -> dict[str, Any]:
    """Build arguments from the tool's JSON schema: strings from ``name=value`` in the user text."""
    pairs = {k: v.strip("\"'").rstrip(".,;:!?") for k, v in _PAIR_RE.findall(user_text)}
    first = next(iter(pairs.values()), "example")
    props = ((tool.get("function") or {}).get("parameters") or {}).get("properties") or {}
    args: dict[str, Any] = {}
    for name, schema in props.items():
        kind = schema.get("type") if isinstance(schema, dict) else None
        if kind == "string":
            args[name] = pairs.get(name, first)  # prefer the pair named like the property
        elif kind in ("number", "integer"):
            args[name] = 1
        elif kind == "boolean":
            args[name] = True
    return args


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param

    def body(self) -> dict[str, Any]:
        kind = "authentication_error" if self.status == 401 else "invalid_request_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


class NimMock:
    """The mock server. ``port=0`` picks a free port; ``.requests`` collects every POST body received.

    ``before_reply`` is called in the request's handler thread before a chat completion is answered
    (after the request was read and recorded). A test can hold replies there until it releases them:
    ``before_reply=threading.Barrier(2, timeout=30).wait`` answers two concurrent calls only once
    both are in flight, so their client spans overlap for certain. An exception it raises (a broken
    barrier) is answered as a 500.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        think_tags: bool = False,
        chunk_delay: float = 0.0,
        before_reply: Callable[[], object] | None = None,
    ) -> None:
        self.api_key = api_key
        self.think_tags = think_tags
        self.chunk_delay = chunk_delay  # seconds between SSE chunks, for time-to-first-token demos
        self.before_reply = before_reply
        self.requests: list[Any] = []
        self._lock = threading.Lock()
        self._seen_prefixes: dict[str, set[str]] = {}  # model -> hashes of message prefixes seen
        self._server = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> NimMock:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="nim-mock", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> NimMock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (called from handler threads) -------------------------------------------

    def check_auth(self, header: str | None) -> None:
        if self.api_key is not None and header != f"Bearer {self.api_key}":
            raise ApiError(401, "Invalid or missing API key.", "invalid_api_key")

    def record(self, body: Any) -> None:
        with self._lock:
            self.requests.append(body)

    def models(self) -> dict[str, Any]:
        ids = CHAT_MODELS + EMBEDDING_MODELS
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "nvidia"} for m in ids],
        }

    def _model(self, body: dict[str, Any], allowed: tuple[str, ...]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "'model' is a required property.", "missing_required_parameter", "model")
        if model not in CHAT_MODELS + EMBEDDING_MODELS:
            raise ApiError(404, f"The model '{model}' does not exist.", "model_not_found", "model")
        if model not in allowed:
            raise ApiError(400, f"The model '{model}' does not support this endpoint.", "model_not_supported")
        return model

    def _cached_tokens(self, model: str, messages: list[dict[str, Any]]) -> int:
        """Longest leading run (>=1, fewer than all) an earlier request to ``model`` started with."""
        keys = [
            hashlib.sha256(json.dumps(messages[:k], sort_keys=True).encode()).hexdigest()
            for k in range(1, len(messages) + 1)
        ]
        with self._lock:
            seen = self._seen_prefixes.setdefault(model, set())
            best = max((k for k in range(1, len(messages)) if keys[k - 1] in seen), default=0)
            seen.update(keys)  # every prefix of this request, including the whole, counts for later ones
        prefix_tokens = sum(message_tokens(m) for m in messages[:best])
        return 16 * (prefix_tokens // 16)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """Build the complete (non-streamed) reply; streaming slices it into chunks."""
        model = self._model(body, CHAT_MODELS)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "'messages' is a required property.", "missing_required_parameter", "messages")
        # Same id recipe as the mock behind the corpus (sorted keys, default separators).
        digest = hashlib.sha256((model + json.dumps(messages, sort_keys=True)).encode()).hexdigest()
        tools = body.get("tools") or []
        prompt = 3 + sum(message_tokens(m) for m in messages) + (tok(_dumps(tools)) if tools else 0)
        cached = self._cached_tokens(model, messages)

        reasoning = _pseudo_text("reasoning" + digest, 20, 40) if reasoning_on(messages) else None
        tool_call = self._tool_call(body, messages, tools, digest)
        content = None if tool_call else _pseudo_text("content" + digest, 6, 30)
        tool_calls = [tool_call] if tool_call else None
        inline = self.think_tags or model in THINK_TAG_MODELS
        if inline and reasoning is not None:
            content, reasoning = f"<think>{reasoning}</think>{content or ''}", None
        reasoning_tokens = tok(reasoning)
        completion = tok(content) + (tok(_dumps(tool_calls)) if tool_calls else 0) + reasoning_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        if not inline:  # older think-tag models report no reasoning split at all
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        finish = "tool_calls" if tool_calls else "stop"
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {
            "id": f"chatcmpl-{digest[:24]}",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        }

    def _tool_call(
        self, body: dict[str, Any], messages: list[dict[str, Any]], tools: list[Any], digest: str
    ) -> dict[str, Any] | None:
        choice = body.get("tool_choice")
        if not tools or choice == "none":
            return None
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        if any(m.get("role") == "tool" for m in messages[last_user + 1 :]):
            return None  # the tool already answered: the reply is the final text
        tool = tools[0]
        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name")
            tool = next((t for t in tools if (t.get("function") or {}).get("name") == wanted), tool)
        user_text = _text(messages[last_user].get("content")) if last_user >= 0 else ""
        args = _tool_arguments(tool, user_text)
        name = (tool.get("function") or {}).get("name", "tool")
        return {
            "id": f"call_{hashlib.sha256(('call' + digest).encode()).hexdigest()[:12]}",
            "type": "function",
            "function": {"name": name, "arguments": _dumps(args)},
        }

    def stream_chunks(self, reply: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
        """Chunk order: role, reasoning, tool-call pieces, content pieces, finish, [usage]."""
        choice = reply["choices"][0]
        msg = choice["message"]
        base = {"id": reply["id"], "object": "chat.completion.chunk", "created": CREATED, "model": reply["model"]}
        extra = {"usage": None} if include_usage else {}  # OpenAI sends usage=null until the last chunk

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
            return {**base, "choices": choices, **extra}

        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"reasoning_content": p}) for p in _pieces(msg.get("reasoning_content"))]
        for call in msg.get("tool_calls") or []:
            head = {"index": 0, "id": call["id"], "type": "function"}
            out.append(
                chunk({"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]})
            )
            args = call["function"]["arguments"]
            for i in range(0, len(args), 8):
                out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 8]}}]}))
        out += [chunk({"content": p}) for p in _pieces(msg.get("content"))]
        out.append(chunk({}, choice["finish_reason"]))
        if include_usage:
            out.append({**base, "choices": [], "usage": reply["usage"]})
        return out

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        model = self._model(body, EMBEDDING_MODELS)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs or not all(isinstance(s, str) for s in inputs):
            raise ApiError(400, "'input' must be a string or a list of strings.", "invalid_input", "input")
        as_b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vec = _vector(model, text)
            emb: Any = base64.b64encode(struct.pack(f"<{EMBED_DIMS}f", *vec)).decode() if as_b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        n = sum(tok(s) for s in inputs)
        return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": n, "total_tokens": n}}


def _pieces(text: str | None) -> list[str]:
    """Split into word pieces (keeping spaces) so that joined chunks equal the non-streamed text."""
    return re.findall(r"\S+\s*|\s+", text) if text else []


def _vector(model: str, text: str) -> list[float]:
    """Unit-length 32-dim vector from the hash of the input, rounded to float32 so base64 matches."""
    raw = hashlib.sha256((model + "\0" + text).encode()).digest() + hashlib.sha256(text.encode()).digest()
    vals = [(b - 127.5) / 127.5 for b in raw[:EMBED_DIMS]]
    norm = math.sqrt(sum(v * v for v in vals)) or 1.0
    return list(struct.unpack(f"<{EMBED_DIMS}f", struct.pack(f"<{EMBED_DIMS}f", *(v / norm for v in vals))))


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # never let a hanging keep-alive connection block interpreter exit

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping keep-alive connections (or stop() closing them) is normal for a mock.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ValueError)):
            super().handle_error(request, client_address)


def _make_handler(mock: NimMock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real NIM; streams use chunked encoding
        server_version = "nim-mock/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send_json(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> str:
            return self.path.split("?", 1)[0].rstrip("/")

        def do_GET(self) -> None:
            try:
                mock.check_auth(self.headers.get("Authorization"))
                path = self._route()
                if path == "/v1/models":
                    return self._send_json(200, mock.models())
                if path.startswith("/v1/models/"):
                    found = [m for m in mock.models()["data"] if m["id"] == path[len("/v1/models/") :]]
                    if found:
                        return self._send_json(200, found[0])
                    raise ApiError(404, "The model does not exist.", "model_not_found")
                if path == "/v1/health/ready":
                    return self._send_json(200, {"status": "ready"})
                raise ApiError(404, f"Unknown path {path}.", "not_found")
            except ApiError as e:
                self._send_json(e.status, e.body())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                try:
                    body = json.loads(raw)
                except ValueError:
                    mock.record(raw.decode("utf-8", "replace"))
                    raise ApiError(400, "Request body is not valid JSON.", "invalid_json") from None
                mock.record(body)
                mock.check_auth(self.headers.get("Authorization"))
                if not isinstance(body, dict):
                    raise ApiError(400, "Request body must be a JSON object.", "invalid_json")
                path = self._route()
                if path == "/v1/chat/completions":
                    if mock.before_reply is not None:
                        mock.before_reply()
                    reply = mock.chat(body)
                    if body.get("stream"):
                        include = bool((body.get("stream_options") or {}).get("include_usage"))
                        return self._send_stream(mock.stream_chunks(reply, include))
                    return self._send_json(200, reply)
                if path == "/v1/embeddings":
                    return self._send_json(200, mock.embeddings(body))
                raise ApiError(404, f"Unknown path {path}.", "not_found")
            except ApiError as e:
                self._send_json(e.status, e.body())
            except (ConnectionError, TimeoutError):
                raise
            except Exception as e:  # noqa: BLE001 - a mock bug should surface as a readable 500, not a hang
                self._send_json(500, {"error": {"message": repr(e), "type": "server_error", "code": None}})

        def _send_stream(self, chunks: list[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
            for event in events:
                data = event.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                if mock.chunk_delay:
                    time.sleep(mock.chunk_delay)
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deterministic mock NVIDIA NIM (OpenAI-compatible) server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--think-tags", action="store_true", help="reasoning inline as <think>...</think>")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream chunks")
    args = parser.parse_args(argv)
    mock = NimMock(args.host, args.port, api_key=args.api_key, think_tags=args.think_tags, chunk_delay=args.chunk_delay)
    print(mock.base_url, flush=True)  # scripts wait for this line to know the server is up
    try:
        mock.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        mock._server.server_close()


if __name__ == "__main__":
    main()
