"""Spans, usage and budget guards for the `openai` client (chat completions and embeddings).

`instrument_openai()` patches `create` on the client's resource classes, so every client, made
before or after, is covered. Spans follow the OTel GenAI conventions (what tracer/semconv.py
reads). Streams are wrapped in a proxy that hands the caller exactly the chunks the server sent
for the request the caller made: when we add `stream_options.include_usage` to learn the usage,
the extra usage-only chunk is swallowed.

Our bookkeeping never breaks the caller's call: failures in it are logged at debug level, while
the real call and its exceptions pass through untouched.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from octotrace import _budget, _config
from octotrace._fingerprint import content_text, estimate_tokens, field, fingerprint_messages, tool_calls_of

log = logging.getLogger("octotrace")

# Known API hosts name the provider; any other OpenAI-compatible server reports the API flavour.
PROVIDER_HOSTS = {
    "integrate.api.nvidia.com": "nvidia",
    "ai.api.nvidia.com": "nvidia",
    "api.openai.com": "openai",
}
DEFAULT_PROVIDER = "openai"
# Set by the client's `with_raw_response` / `with_streaming_response`: the caller gets the raw
# HTTP response, not a ChatCompletion or Stream, so there is nothing for us to read or swallow.
RAW_RESPONSE_HEADER = "x-stainless-raw-response"

ATTR_STREAM = "octotrace.request.stream"
ATTR_TOOL_CALLS = "octotrace.response.tool_calls"
ATTR_REASONING_ESTIMATED = "octotrace.usage.reasoning_estimated"
ATTR_MESSAGE_HASHES = "octotrace.input.message_hashes"
ATTR_MESSAGE_TOKENS = "octotrace.input.message_tokens"
ATTR_MESSAGE_ROLES = "octotrace.input.message_roles"

# Request parameter -> span attribute, numbers only.
_NUMERIC_PARAMS = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
)

_lock = threading.Lock()
_originals: dict[tuple[type, str], Any] = {}
_tracer: trace.Tracer = trace.get_tracer("octotrace")


def instrument_openai(*, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Patch the openai client classes. Idempotent; a no-op when `openai` is not installed.

    Spans go to the global tracer provider unless `tracer_provider` is given (octotrace's own,
    when the application's global provider is not an SDK one)."""
    global _tracer
    try:
        from openai.resources.chat.completions import AsyncCompletions, Completions
        from openai.resources.embeddings import AsyncEmbeddings, Embeddings
    except ImportError:
        log.debug("octotrace: openai is not installed, nothing to instrument")
        return
    with _lock:
        if _originals:
            return
        _tracer = trace.get_tracer("octotrace", _version(), tracer_provider=tracer_provider)
        for cls, factory in (
            (Completions, _wrap_chat),
            (AsyncCompletions, _wrap_chat_async),
            (Embeddings, _wrap_embeddings),
            (AsyncEmbeddings, _wrap_embeddings_async),
        ):
            original = cls.__dict__["create"]
            _originals[(cls, "create")] = original
            cls.create = factory(original)


def uninstrument_openai() -> None:
    """Restore the original methods. Idempotent."""
    with _lock:
        for (cls, name), original in _originals.items():
            setattr(cls, name, original)
        _originals.clear()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("octotrace")
    except Exception:  # noqa: BLE001 - a source checkout without metadata still traces
        return "0.0.0"


def _capture_content() -> bool:
    """Whether prompts and completions go on spans: the effective config once `init()` ran,
    else OCTOTRACE_CAPTURE_CONTENT (off by default: text may be sensitive)."""
    current = _config.config()
    if current.initialized:
        return current.capture_content
    # Before init(), the environment speaks for a bare instrument_openai().
    try:
        return _config.env_bool("OCTOTRACE_CAPTURE_CONTENT")
    except ValueError:
        return False  # a typo in a variable must not break the model call


# --- wrappers --------------------------------------------------------------------------------


def _wrap_chat(original: Any) -> Any:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        _budget.check_before_call()
        call = _ChatCall.start(self, kwargs)
        if call is None:
            return original(self, *args, **kwargs)
        with trace.use_span(call.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            try:
                result = original(self, *args, **call.kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
        return call.result(result, is_async=False)

    create.__octotrace_original__ = original  # type: ignore[attr-defined]
    return create


def _wrap_chat_async(original: Any) -> Any:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        _budget.check_before_call()
        call = _ChatCall.start(self, kwargs)
        if call is None:
            return await original(self, *args, **kwargs)
        with trace.use_span(call.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            try:
                result = await original(self, *args, **call.kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
        return call.result(result, is_async=True)

    create.__octotrace_original__ = original  # type: ignore[attr-defined]
    return create


def _wrap_embeddings(original: Any) -> Any:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        _budget.check_before_call()
        call = _EmbeddingsCall.start(self, kwargs)
        if call is None:
            return original(self, *args, **kwargs)
        with trace.use_span(call.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            try:
                result = original(self, *args, **kwargs)
            except BaseException as exc:
                _fail(call.span, exc)
                raise
        call.result(result)
        return result

    create.__octotrace_original__ = original  # type: ignore[attr-defined]
    return create


def _wrap_embeddings_async(original: Any) -> Any:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        _budget.check_before_call()
        call = _EmbeddingsCall.start(self, kwargs)
        if call is None:
            return await original(self, *args, **kwargs)
        with trace.use_span(call.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            try:
                result = await original(self, *args, **kwargs)
            except BaseException as exc:
                _fail(call.span, exc)
                raise
        call.result(result)
        return result

    create.__octotrace_original__ = original  # type: ignore[attr-defined]
    return create


# --- chat ------------------------------------------------------------------------------------


class _Choice:
    """One choice of a response, complete (non-stream) or accumulated from chunks."""

    __slots__ = ("content", "finish_reason", "index", "reasoning", "tool_calls")

    def __init__(self, index: int) -> None:
        self.index = index
        self.finish_reason: str | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        # tool index -> {"id", "name", "arguments": [pieces]}
        self.tool_calls: dict[int, dict[str, Any]] = {}


class _ChatCall:
    """The state of one chat call from request to the end of its span."""

    def __init__(self, span: Span, kwargs: dict[str, Any], *, model: str, provider: str, injected: bool) -> None:
        self.span = span
        self.kwargs = kwargs
        self.model = model
        self.provider = provider
        # We added include_usage: the usage-only chunk is ours and the caller must not see it.
        self.injected = injected
        self.recording = span.is_recording()
        self.capture = self.recording and _capture_content()
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.usage: Any = None
        self.choices: dict[int, _Choice] = {}
        self.done = False

    @classmethod
    def start(cls, client_resource: Any, kwargs: dict[str, Any]) -> _ChatCall | None:
        """Open the span and prepare the request; None when there is nothing to record (no-op
        tracer or unsampled, and no budget to charge) or when our own code failed."""
        span: Span | None = None
        try:
            model = kwargs.get("model")
            model = model if isinstance(model, str) else ""
            span = _tracer.start_span(f"chat {model}" if model else "chat", kind=SpanKind.CLIENT)
            if not span.is_recording() and not _budget.active():
                span.end()
                return None
            call_kwargs = dict(kwargs)
            messages = call_kwargs.get("messages")
            # We read the messages, and so would exhaust a one-shot iterator the caller passed.
            if messages is not None and not isinstance(messages, (list, tuple)):
                call_kwargs["messages"] = messages = list(messages)
            stream = call_kwargs.get("stream") is True
            injected = False
            if stream and not _is_raw(call_kwargs) and not _usage_requested(call_kwargs):
                options = call_kwargs.get("stream_options")
                options = dict(options) if isinstance(options, Mapping) else {}
                options["include_usage"] = True
                call_kwargs["stream_options"] = options
                injected = True
            address, port, provider = _server(client_resource)
            call = cls(span, call_kwargs, model=model, provider=provider, injected=injected)
            if call.recording:
                attributes = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": provider,
                    "gen_ai.request.model": model,
                    ATTR_STREAM: stream,
                }
                if address:
                    attributes["server.address"] = address
                if port:
                    attributes["server.port"] = port
                attributes.update(_request_params(call_kwargs))
                if messages:
                    hashes, tokens, roles = fingerprint_messages(messages)
                    attributes[ATTR_MESSAGE_HASHES] = hashes
                    attributes[ATTR_MESSAGE_TOKENS] = tokens
                    attributes[ATTR_MESSAGE_ROLES] = roles
                    if call.capture:
                        attributes["gen_ai.input.messages"] = _json(_input_messages(messages))
                span.set_attributes(attributes)
            return call
        except Exception:  # noqa: BLE001 - never fail the caller's call for our bookkeeping
            log.debug("octotrace: could not start the chat span", exc_info=True)
            if span is not None:
                span.end()
            return None

    def result(self, result: Any, *, is_async: bool) -> Any:
        """Record a non-stream response, or wrap a stream so that it is recorded as consumed."""
        try:
            if hasattr(result, "choices"):
                self.response_id = getattr(result, "id", None)
                self.response_model = getattr(result, "model", None)
                self.usage = getattr(result, "usage", None)
                for choice in result.choices or ():
                    self.choices[choice.index] = _complete_choice(choice)
                self.finish()
                return result
            if self.kwargs.get("stream") is True and not _is_raw(self.kwargs):
                return _AsyncStreamProxy(result, self) if is_async else _StreamProxy(result, self)
            # A raw response: the body is the caller's to read.
            self.finish()
        except Exception:  # noqa: BLE001
            log.debug("octotrace: could not record the chat response", exc_info=True)
            self._end()
        return result

    def on_chunk(self, chunk: Any) -> bool:
        """Accumulate one stream chunk; False when the chunk is ours and must be swallowed."""
        try:
            usage = getattr(chunk, "usage", None)
            choices = getattr(chunk, "choices", None) or ()
            if usage is not None:
                self.usage = usage
                if self.injected and not choices:
                    return False
            elif self.injected:
                # With include_usage the server sends "usage": null on every chunk; without it
                # the key is absent. Keep the chunk as the caller would have had it (to_dict()).
                fields_set = getattr(chunk, "__pydantic_fields_set__", None)
                if isinstance(fields_set, set):
                    fields_set.discard("usage")
            if self.response_id is None:
                self.response_id = getattr(chunk, "id", None)
            if self.response_model is None:
                self.response_model = getattr(chunk, "model", None) or None
            for choice in choices:
                acc = self.choices.get(choice.index)
                if acc is None:
                    acc = self.choices[choice.index] = _Choice(choice.index)
                if choice.finish_reason:
                    acc.finish_reason = choice.finish_reason
                delta = choice.delta
                if delta is None:
                    continue
                if delta.content:
                    acc.content.append(delta.content)
                reasoning = _reasoning_of(delta)
                if reasoning:
                    acc.reasoning.append(reasoning)
                for tool_call in delta.tool_calls or ():
                    slot = acc.tool_calls.get(tool_call.index)
                    if slot is None:
                        slot = acc.tool_calls[tool_call.index] = {"id": None, "name": None, "arguments": []}
                    if tool_call.id:
                        slot["id"] = tool_call.id
                    function = tool_call.function
                    if function is not None:
                        # The name comes whole in the call's first chunk; arguments come in pieces.
                        if function.name and not slot["name"]:
                            slot["name"] = function.name
                        if function.arguments:
                            slot["arguments"].append(function.arguments)
        except Exception:  # noqa: BLE001
            log.debug("octotrace: could not read a stream chunk", exc_info=True)
        return True

    def finish(self) -> None:
        """Record the response and usage, charge the budgets and end the span. Runs once."""
        if self.done:
            return
        try:
            self._record_response()
        except Exception:  # noqa: BLE001
            log.debug("octotrace: could not record the chat response", exc_info=True)
        self._end()

    def fail(self, exc: BaseException) -> None:
        if self.done:
            return
        try:
            _set_error(self.span, exc)
        except Exception:  # noqa: BLE001
            log.debug("octotrace: could not record the error", exc_info=True)
        self._end()

    def _end(self) -> None:
        if not self.done:
            self.done = True
            self.span.end()

    def _record_response(self) -> None:
        span = self.span
        choices = [self.choices[index] for index in sorted(self.choices)]
        reasoning_texts = []
        for choice in choices:
            reasoning, _ = _split_reasoning(choice)
            if reasoning:
                reasoning_texts.append(reasoning)
        tokens = _usage_numbers(self.usage)
        reported = tokens["reasoning_tokens"]
        estimated = False
        if not reported and reasoning_texts:
            # The server did not count the reasoning it sent (older NIM releases, <think> in the
            # content): estimate it, and say so.
            estimate = sum(estimate_tokens(text) for text in reasoning_texts)
            if tokens["output_tokens"] is not None:
                estimate = min(estimate, tokens["output_tokens"])
            tokens["reasoning_tokens"] = estimate
            estimated = True

        cost = None
        if self.usage is not None:
            cost = _charge(
                model=self.response_model or self.model,
                provider=self.provider,
                input_tokens=tokens["input_tokens"],
                output_tokens=tokens["output_tokens"],
                cached_input_tokens=tokens["cached_input_tokens"],
                cache_write_tokens=tokens["cache_write_tokens"],
                reasoning_tokens=tokens["reasoning_tokens"],
            )
        if not self.recording:
            return

        attributes: dict[str, Any] = {}
        if self.response_id:
            attributes["gen_ai.response.id"] = self.response_id
        if self.response_model:
            attributes["gen_ai.response.model"] = self.response_model
        finish_reasons = [choice.finish_reason for choice in choices if choice.finish_reason]
        if finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = finish_reasons
        tool_names = [
            call["name"] for choice in choices for call in _tool_calls(choice) if isinstance(call["name"], str)
        ]
        if tool_names:
            attributes[ATTR_TOOL_CALLS] = tool_names
        for key, attribute in (
            ("input_tokens", "gen_ai.usage.input_tokens"),
            ("output_tokens", "gen_ai.usage.output_tokens"),
            ("cached_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
            ("cache_write_tokens", "gen_ai.usage.cache_creation.input_tokens"),
            ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
        ):
            if tokens[key] is not None:
                attributes[attribute] = tokens[key]
        if estimated:
            attributes[ATTR_REASONING_ESTIMATED] = True
        if cost is not None:
            attributes["gen_ai.usage.cost"] = float(cost)
        if self.capture:
            attributes["gen_ai.output.messages"] = _json([_output_message(choice) for choice in choices])
        span.set_attributes(attributes)


def _complete_choice(choice: Any) -> _Choice:
    out = _Choice(choice.index)
    out.finish_reason = choice.finish_reason
    message = choice.message
    if message is None:
        return out
    if isinstance(message.content, str) and message.content:
        out.content.append(message.content)
    reasoning = _reasoning_of(message)
    if reasoning:
        out.reasoning.append(reasoning)
    for index, call in enumerate(tool_calls_of(message)):
        out.tool_calls[index] = {"id": call["id"], "name": call["name"], "arguments": [call["arguments"] or ""]}
    legacy = getattr(message, "function_call", None)
    if legacy is not None and not out.tool_calls:
        out.tool_calls[0] = {"id": None, "name": legacy.name, "arguments": [legacy.arguments or ""]}
    return out


def _reasoning_of(message: Any) -> str:
    """Reasoning text a server returns beside the content (NIM, vLLM: reasoning_content;
    some newer servers: reasoning)."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _split_reasoning(choice: _Choice) -> tuple[str, str]:
    """(reasoning, answer) of a choice: the reasoning field, else a <think>...</think> block
    at the head of the content, as older Nemotron models write it."""
    content = "".join(choice.content)
    if choice.reasoning:
        return "".join(choice.reasoning), content
    start = content.find("<think>")
    if start < 0:
        return "", content
    end = content.find("</think>", start)
    if end < 0:  # cut off (max_tokens) while still thinking
        return content[start + len("<think>") :].strip(), content[:start]
    reasoning = content[start + len("<think>") : end].strip()
    return reasoning, (content[:start] + content[end + len("</think>") :]).strip()


def _tool_calls(choice: _Choice) -> list[dict[str, Any]]:
    return [
        {"id": slot["id"], "name": slot["name"], "arguments": "".join(slot["arguments"])}
        for _, slot in sorted(choice.tool_calls.items())
    ]


def _output_message(choice: _Choice) -> dict[str, Any]:
    reasoning, answer = _split_reasoning(choice)
    parts: list[dict[str, Any]] = []
    if reasoning:
        parts.append({"type": "reasoning", "content": reasoning})
    if answer:
        parts.append({"type": "text", "content": answer})
    for call in _tool_calls(choice):
        parts.append(
            {"type": "tool_call", "id": call["id"], "name": call["name"], "arguments": _arguments(call["arguments"])}
        )
    return {"role": "assistant", "parts": parts, "finish_reason": choice.finish_reason or ""}


def _input_messages(messages: list[Any] | tuple[Any, ...]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        role = field(message, "role") or ""
        text, others = content_text(field(message, "content"))
        parts: list[dict[str, Any]] = []
        if role == "tool":
            parts.append({"type": "tool_call_response", "id": field(message, "tool_call_id"), "response": text})
        elif text:
            parts.append({"type": "text", "content": text})
        parts.extend(others)
        for call in tool_calls_of(message):
            parts.append(
                {
                    "type": "tool_call",
                    "id": call["id"],
                    "name": call["name"],
                    "arguments": _arguments(call["arguments"]),
                }
            )
        entry: dict[str, Any] = {"role": role, "parts": parts}
        name = field(message, "name")
        if isinstance(name, str) and name:
            entry["name"] = name
        out.append(entry)
    return out


def _arguments(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


# --- embeddings ------------------------------------------------------------------------------


class _EmbeddingsCall:
    def __init__(self, span: Span, *, model: str, provider: str) -> None:
        self.span = span
        self.model = model
        self.provider = provider

    @classmethod
    def start(cls, client_resource: Any, kwargs: dict[str, Any]) -> _EmbeddingsCall | None:
        span: Span | None = None
        try:
            model = kwargs.get("model")
            model = model if isinstance(model, str) else ""
            span = _tracer.start_span(f"embeddings {model}" if model else "embeddings", kind=SpanKind.CLIENT)
            if not span.is_recording() and not _budget.active():
                span.end()
                return None
            address, port, provider = _server(client_resource)
            if span.is_recording():
                attributes: dict[str, Any] = {
                    "gen_ai.operation.name": "embeddings",
                    "gen_ai.provider.name": provider,
                    "gen_ai.request.model": model,
                }
                if address:
                    attributes["server.address"] = address
                if port:
                    attributes["server.port"] = port
                encoding = kwargs.get("encoding_format")
                if isinstance(encoding, str):
                    attributes["gen_ai.request.encoding_formats"] = [encoding]
                dimensions = kwargs.get("dimensions")
                if _is_int(dimensions):
                    attributes["gen_ai.embeddings.dimension.count"] = dimensions
                span.set_attributes(attributes)
            return cls(span, model=model, provider=provider)
        except Exception:  # noqa: BLE001
            log.debug("octotrace: could not start the embeddings span", exc_info=True)
            if span is not None:
                span.end()
            return None

    def result(self, result: Any) -> None:
        try:
            usage = getattr(result, "usage", None)
            response_model = getattr(result, "model", None)
            input_tokens = getattr(usage, "prompt_tokens", None)
            input_tokens = input_tokens if _is_int(input_tokens) else None
            cost = None
            if usage is not None:
                cost = _charge(
                    model=response_model or self.model,
                    provider=self.provider,
                    input_tokens=input_tokens,
                    output_tokens=None,
                )
            if self.span.is_recording():
                attributes: dict[str, Any] = {}
                if isinstance(response_model, str) and response_model:
                    attributes["gen_ai.response.model"] = response_model
                if input_tokens is not None:
                    attributes["gen_ai.usage.input_tokens"] = input_tokens
                if cost is not None:
                    attributes["gen_ai.usage.cost"] = float(cost)
                self.span.set_attributes(attributes)
        except Exception:  # noqa: BLE001
            log.debug("octotrace: could not record the embeddings response", exc_info=True)
        self.span.end()


# --- streams ---------------------------------------------------------------------------------


class _StreamProxy:
    """Stands in for an `openai.Stream`: same chunks, same attributes, records as consumed.

    The span ends when the stream is exhausted, fails, is closed (directly or by leaving a
    `with` block) or is garbage collected half-read.
    """

    # Class-level defaults: __del__ and __getattr__ must work even on a half-built proxy.
    _octotrace_stream: Any = None
    _octotrace_call: _ChatCall | None = None

    def __init__(self, stream: Any, call: _ChatCall) -> None:
        self._octotrace_stream = stream
        self._octotrace_call = call

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, openai.Stream) stays true
        return type(self._octotrace_stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._octotrace_stream, name)

    def __iter__(self) -> _StreamProxy:
        return self

    def __next__(self) -> Any:
        call = self._octotrace_call
        while True:
            try:
                chunk = next(self._octotrace_stream)
            except StopIteration:
                call.finish()
                raise
            except BaseException as exc:
                call.fail(exc)
                raise
            if call.on_chunk(chunk):
                return chunk

    def __enter__(self) -> _StreamProxy:
        self._octotrace_stream.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self._octotrace_stream.__exit__(*exc_info)
        finally:
            self._octotrace_call.finish()

    def close(self) -> None:
        try:
            self._octotrace_stream.close()
        finally:
            self._octotrace_call.finish()

    def __del__(self) -> None:
        call = self._octotrace_call
        if call is not None and not call.done:
            try:
                call.finish()
            except Exception:  # noqa: BLE001 - interpreter shutdown, say
                log.debug("octotrace: could not end a stream span", exc_info=True)


class _AsyncStreamProxy:
    """Stands in for an `openai.AsyncStream`; see _StreamProxy."""

    _octotrace_stream: Any = None
    _octotrace_call: _ChatCall | None = None

    def __init__(self, stream: Any, call: _ChatCall) -> None:
        self._octotrace_stream = stream
        self._octotrace_call = call

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._octotrace_stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._octotrace_stream, name)

    def __aiter__(self) -> _AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        call = self._octotrace_call
        while True:
            try:
                chunk = await self._octotrace_stream.__anext__()
            except StopAsyncIteration:
                call.finish()
                raise
            except BaseException as exc:
                call.fail(exc)
                raise
            if call.on_chunk(chunk):
                return chunk

    async def __aenter__(self) -> _AsyncStreamProxy:
        await self._octotrace_stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self._octotrace_stream.__aexit__(*exc_info)
        finally:
            self._octotrace_call.finish()

    async def close(self) -> None:
        try:
            await self._octotrace_stream.close()
        finally:
            self._octotrace_call.finish()

    async def aclose(self) -> None:
        await self.close()

    def __del__(self) -> None:
        call = self._octotrace_call
        if call is not None and not call.done:
            try:
                call.finish()
            except Exception:  # noqa: BLE001
                log.debug("octotrace: could not end a stream span", exc_info=True)


# --- helpers ---------------------------------------------------------------------------------


def _server(client_resource: Any) -> tuple[str, int | None, str]:
    """(host, port, provider) of the client's base_url."""
    url = client_resource._client.base_url
    host = (url.host or "").lower()
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    return host, port, PROVIDER_HOSTS.get(host, DEFAULT_PROVIDER)


def _is_raw(kwargs: Mapping[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    if not isinstance(headers, Mapping):
        return False
    return any(isinstance(key, str) and key.lower() == RAW_RESPONSE_HEADER for key in headers)


def _usage_requested(kwargs: Mapping[str, Any]) -> bool:
    """Whether the caller asked for usage in the stream itself (then the usage chunk is theirs)."""
    options = kwargs.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage"):
        return True
    extra = kwargs.get("extra_body")
    # Options passed through extra_body reach the server as they are: leave them alone.
    return isinstance(extra, Mapping) and "stream_options" in extra


def _request_params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for param, attribute in _NUMERIC_PARAMS:
        value = kwargs.get(param)
        if _is_number(value):
            attributes[attribute] = value
    max_tokens = kwargs.get("max_completion_tokens")
    if not _is_int(max_tokens):
        max_tokens = kwargs.get("max_tokens")
    if _is_int(max_tokens):
        attributes["gen_ai.request.max_tokens"] = max_tokens
    n = kwargs.get("n")
    if _is_int(n) and n != 1:
        attributes["gen_ai.request.choice.count"] = n
    stop = kwargs.get("stop")
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        attributes["gen_ai.request.stop_sequences"] = list(stop)
    return attributes


def _usage_numbers(usage: Any) -> dict[str, int | None]:
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    numbers = {
        "input_tokens": getattr(usage, "prompt_tokens", None),
        "output_tokens": getattr(usage, "completion_tokens", None),
        "cached_input_tokens": getattr(prompt_details, "cached_tokens", None),
        "cache_write_tokens": getattr(prompt_details, "cache_write_tokens", None),
        "reasoning_tokens": getattr(completion_details, "reasoning_tokens", None),
    }
    return {key: value if _is_int(value) else None for key, value in numbers.items()}


def _charge(**usage: Any) -> Decimal | None:
    """Charge the enclosing budgets; a failure here must not cost the span its attributes."""
    try:
        return _budget.charge(**usage)
    except Exception:  # noqa: BLE001
        log.debug("octotrace: could not charge the budget", exc_info=True)
        return None


def _set_error(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:500] or type(exc).__qualname__))
    span.set_attribute("error.type", type(exc).__qualname__)


def _fail(span: Span, exc: BaseException) -> None:
    try:
        _set_error(span, exc)
    except Exception:  # noqa: BLE001
        log.debug("octotrace: could not record the error", exc_info=True)
    span.end()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
