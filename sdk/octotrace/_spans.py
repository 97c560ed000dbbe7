"""`workflow`, `agent`, `tool` and `step`: spans around the user's own code.

Each is a decorator (bare, or with arguments) and a context manager (sync and async), for
functions, coroutines, generators and async generators. Names and attributes follow the OTel
GenAI conventions, so any backend reads them: `invoke_agent <name>` with `gen_ai.agent.name`...

Everything that depends only on the decorated function (span name, attributes, budget) is
computed once at decoration time; a call starts the span, makes it current and ends it, no more.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar, overload

from opentelemetry import context, trace
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from octotrace._budget import open_budget

F = TypeVar("F", bound=Callable[..., Any])

ATTR_OPERATION = "gen_ai.operation.name"
ATTR_WORKFLOW_NAME = "gen_ai.workflow.name"
ATTR_AGENT_NAME = "gen_ai.agent.name"
ATTR_AGENT_DESCRIPTION = "gen_ai.agent.description"
ATTR_TOOL_NAME = "gen_ai.tool.name"
ATTR_TOOL_TYPE = "gen_ai.tool.type"
ATTR_TOOL_DESCRIPTION = "gen_ai.tool.description"
ATTR_TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
ATTR_TOOL_RESULT = "gen_ai.tool.call.result"
ATTR_CONVERSATION_ID = "gen_ai.conversation.id"
ATTR_SPAN_KIND = "octotrace.span.kind"
ATTR_DESCRIPTION = "octotrace.description"
ATTR_ERROR_TYPE = "error.type"

BUDGET_MODES = ("raise", "warn")

# Set by `octotrace.init` / `shutdown` (octotrace._setup). Until init, the proxy
# tracer of the global provider; module globals because the hot path reads them on every call.
_tracer: trace.Tracer = trace.get_tracer("octotrace")
_capture_content = False

# The conversation id in force: `octotrace.init`'s span processor stamps it on every span started
# below a `conversation_id=`, the model-call spans of the instrumentation included.
_conversation: contextvars.ContextVar[str | None] = contextvars.ContextVar("octotrace_conversation", default=None)


def configure(*, tracer: trace.Tracer | None, capture_content: bool) -> None:
    """Point the decorators at `tracer` (None: back to the global provider's)."""
    global _tracer, _capture_content
    _tracer = tracer if tracer is not None else trace.get_tracer("octotrace")
    _capture_content = capture_content


def current_conversation_id() -> str | None:
    return _conversation.get()


@dataclass(frozen=True, slots=True, eq=False)
class _Spec:
    """What every call of one decorated function (or one `with` block) needs, computed once."""

    kind: str
    name: str
    span_name: str
    attributes: Mapping[str, AttributeValue]
    conversation_id: str | None
    budget: dict[str, Any] | None  # keyword arguments of open_budget, None without a limit
    is_tool: bool
    signature: inspect.Signature | None = None

    @property
    def plain(self) -> bool:
        return self.budget is None and self.conversation_id is None


def _spec(
    kind: str,
    name: str,
    *,
    conversation_id: str | None,
    description: str | None,
    attributes: Mapping[str, AttributeValue] | None,
    budget_usd: float | Decimal | str | None,
    budget_tokens: int | None,
    budget_mode: str,
    signature: inspect.Signature | None = None,
) -> _Spec:
    attrs: dict[str, AttributeValue] = dict(attributes or {})
    if kind == "workflow":
        span_name = f"invoke_workflow {name}"
        attrs.update({ATTR_OPERATION: "invoke_workflow", ATTR_WORKFLOW_NAME: name})
        description_key = ATTR_DESCRIPTION
    elif kind == "agent":
        span_name = f"invoke_agent {name}"
        attrs.update({ATTR_OPERATION: "invoke_agent", ATTR_AGENT_NAME: name})
        description_key = ATTR_AGENT_DESCRIPTION
    elif kind == "tool":
        span_name = f"execute_tool {name}"
        attrs.update({ATTR_OPERATION: "execute_tool", ATTR_TOOL_NAME: name, ATTR_TOOL_TYPE: "function"})
        description_key = ATTR_TOOL_DESCRIPTION
    else:
        span_name = name
        attrs[ATTR_SPAN_KIND] = "step"
        description_key = ATTR_DESCRIPTION
    if description is not None:
        attrs[description_key] = description
    if conversation_id is not None:
        attrs[ATTR_CONVERSATION_ID] = conversation_id
    budget = None
    if budget_usd is not None or budget_tokens is not None:
        budget = {"usd": budget_usd, "tokens": budget_tokens, "mode": budget_mode}
    return _Spec(
        kind=kind,
        name=name,
        span_name=span_name,
        attributes=attrs,
        conversation_id=conversation_id,
        budget=budget,
        is_tool=kind == "tool",
        signature=signature,
    )


def _record_error(span: Span, exc: BaseException) -> None:
    # Same as start_as_current_span's record_exception / set_status_on_exception, plus the
    # GenAI conventions' error.type.
    span.record_exception(exc)
    span.set_attribute(ATTR_ERROR_TYPE, type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _to_json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _arguments(spec: _Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    arguments: dict[str, Any]
    if spec.signature is None:
        arguments = {"args": list(args), "kwargs": kwargs}
    else:
        try:
            arguments = dict(spec.signature.bind_partial(*args, **kwargs).arguments)
        except TypeError:  # the call itself is wrong and will raise; record what was passed
            arguments = {"args": list(args), "kwargs": kwargs}
        arguments.pop("self", None)
        arguments.pop("cls", None)
    return _to_json(arguments)


def _result(value: Any) -> str:
    return value if isinstance(value, str) else _to_json(value)


class _Scope:
    """One span made current, with its conversation id and budget, for the length of a call."""

    __slots__ = ("_spec", "_arguments", "_conversation_token", "_context_token", "_budget", "span")

    def __init__(self, spec: _Spec, arguments: str | None = None) -> None:
        self._spec = spec
        self._arguments = arguments

    def __enter__(self) -> Span:
        spec = self._spec
        # Before the span starts, so the span processor stamps the id on it and its children.
        self._conversation_token = _conversation.set(spec.conversation_id) if spec.conversation_id is not None else None
        attributes = spec.attributes
        if self._arguments is not None:
            attributes = {**attributes, ATTR_TOOL_ARGUMENTS: self._arguments}
        span = self.span = _tracer.start_span(spec.span_name, attributes=attributes)
        self._context_token = context.attach(trace.set_span_in_context(span))
        self._budget = None
        if spec.budget is not None:
            budget = open_budget(name=spec.name, span=span, **spec.budget)
            budget.__enter__()
            self._budget = budget
        return span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self.span
        try:
            if self._budget is not None:
                # Not passed the exception: the budget only records its spend, the error is ours.
                self._budget.__exit__(None, None, None)
        finally:
            # GeneratorExit is a consumer closing a generator early, not a failure.
            if exc is not None and not isinstance(exc, GeneratorExit):
                _record_error(span, exc)
            context.detach(self._context_token)
            if self._conversation_token is not None:
                _conversation.reset(self._conversation_token)
            span.end()


class _InContext:
    """Awaits an awaitable with each of its steps run in `ctx`, the way an asyncio Task runs its
    coroutine in the task's context: an async generator's body sees its span (and budget) as
    current at every step, while the code iterating it between steps does not."""

    __slots__ = ("_ctx", "_awaitable")

    def __init__(self, ctx: contextvars.Context, awaitable: Any) -> None:
        self._ctx = ctx
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        ctx = self._ctx
        steps = self._awaitable.__await__()
        method, arg = steps.send, None
        while True:
            try:
                signal = ctx.run(method, arg)
            except StopIteration as stop:
                return stop.value
            try:
                arg = yield signal
            except GeneratorExit:
                ctx.run(steps.close)
                raise
            except BaseException as exc:  # noqa: BLE001 - forwarded into the awaitable (cancellation)
                method, arg = steps.throw, exc
            else:
                method = steps.send


def _wrap(spec: _Spec, func: F) -> F:
    span_name = spec.span_name
    attributes = spec.attributes
    plain = spec.plain
    is_tool = spec.is_tool
    # Local names: the hot path below does no global or attribute lookups for these.
    attach, detach, set_span_in_context = context.attach, context.detach, trace.set_span_in_context

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = _Scope(spec, _arguments(spec, args, kwargs) if is_tool and _capture_content else None)
            # The generator's steps run in their own context (see _InContext), entered here, at
            # the first iteration: the span's parent is what is current when iteration starts.
            ctx = contextvars.copy_context()
            ctx.run(scope.__enter__)
            error: BaseException | None = None
            try:
                agen = ctx.run(func, *args, **kwargs)
                method, arg = agen.asend, None
                while True:
                    try:
                        item = await _InContext(ctx, method(arg))
                    except StopAsyncIteration:
                        return
                    try:
                        arg = yield item
                    except GeneratorExit:
                        await _InContext(ctx, agen.aclose())
                        raise
                    except BaseException as thrown:  # noqa: BLE001 - athrow(): forwarded into the generator
                        method, arg = agen.athrow, thrown
                    else:
                        method = agen.asend
            except BaseException as exc:
                error = exc
                raise
            finally:
                ctx.run(scope.__exit__, None, error, None)

        return async_gen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = _Scope(spec, _arguments(spec, args, kwargs) if is_tool and _capture_content else None)
            # Each step of the generator runs in this context, so its body sees the span as
            # current while the consumer's code between two items does not.
            ctx = contextvars.copy_context()
            ctx.run(scope.__enter__)
            error: BaseException | None = None
            try:
                gen = ctx.run(func, *args, **kwargs)
                method, arg = gen.send, None
                while True:
                    try:
                        item = ctx.run(method, arg)
                    except StopIteration as stop:
                        return stop.value
                    try:
                        arg = yield item
                    except GeneratorExit:
                        ctx.run(gen.close)
                        raise
                    except BaseException as thrown:  # noqa: BLE001 - throw(): forwarded into the generator
                        method, arg = gen.throw, thrown
                    else:
                        method = gen.send
            except BaseException as exc:
                error = exc
                raise
            finally:
                ctx.run(scope.__exit__, None, error, None)

        return gen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if plain and not (_capture_content and is_tool):
                span = _tracer.start_span(span_name, attributes=attributes)
                token = attach(set_span_in_context(span))
                try:
                    return await func(*args, **kwargs)
                except BaseException as exc:
                    _record_error(span, exc)
                    raise
                finally:
                    detach(token)
                    span.end()
            capture = is_tool and _capture_content
            with _Scope(spec, _arguments(spec, args, kwargs) if capture else None) as scope_span:
                result = await func(*args, **kwargs)
                if capture:
                    scope_span.set_attribute(ATTR_TOOL_RESULT, _result(result))
                return result

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if plain and not (_capture_content and is_tool):
            span = _tracer.start_span(span_name, attributes=attributes)
            token = attach(set_span_in_context(span))
            try:
                return func(*args, **kwargs)
            except BaseException as exc:
                _record_error(span, exc)
                raise
            finally:
                detach(token)
                span.end()
        capture = is_tool and _capture_content
        with _Scope(spec, _arguments(spec, args, kwargs) if capture else None) as scope_span:
            result = func(*args, **kwargs)
            if capture:
                scope_span.set_attribute(ATTR_TOOL_RESULT, _result(result))
            return result

    return wrapper  # type: ignore[return-value]


class _Operation:
    """What `octotrace.agent(...)` returns: a decorator and a (sync or async) context manager."""

    __slots__ = ("_kind", "_name", "_options", "_spec", "_scopes")

    def __init__(self, kind: str, name: str | None, options: dict[str, Any]) -> None:
        self._kind = kind
        self._name = name
        self._options = options
        self._spec: _Spec | None = None
        # A stack, so that one instance can be entered again inside itself (recursion).
        self._scopes: list[_Scope] = []

    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"octotrace.{self._kind}() decorates a callable, not {func!r}")
        name = self._name or getattr(func, "__name__", None) or type(func).__name__
        signature = None
        if self._kind == "tool":
            try:
                signature = inspect.signature(func)
            except (TypeError, ValueError):  # some builtins have none: arguments are recorded as passed
                signature = None
        return _wrap(_spec(self._kind, name, signature=signature, **self._options), func)

    def _enter(self) -> Span:
        if self._spec is None:
            if not self._name:
                raise TypeError(f"octotrace.{self._kind}() as a context manager needs a name")
            self._spec = _spec(self._kind, self._name, **self._options)
        scope = _Scope(self._spec)
        span = scope.__enter__()
        self._scopes.append(scope)
        return span

    def _exit(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._scopes.pop().__exit__(exc_type, exc, tb)

    def __enter__(self) -> Span:
        return self._enter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc_type, exc, tb)

    async def __aenter__(self) -> Span:
        return self._enter()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc_type, exc, tb)


def _operation(
    kind: str,
    target: Callable[..., Any] | str | None,
    name: str | None,
    options: dict[str, Any],
) -> Any:
    mode = options.get("budget_mode")
    if mode is not None and mode not in BUDGET_MODES:
        raise ValueError(f"budget_mode must be 'raise' or 'warn', not {mode!r}")
    if target is None or isinstance(target, str):
        if target is not None and name is not None:
            raise TypeError(f"octotrace.{kind}() got the name twice")
        return _Operation(kind, target if target is not None else name, options)
    if not callable(target):
        raise TypeError(f"octotrace.{kind}() takes a name or a callable, not {target!r}")
    return _Operation(kind, name, options)(target)


_NO_BUDGET = {"budget_usd": None, "budget_tokens": None, "budget_mode": "raise"}


@overload
def workflow(target: F, /) -> F: ...
@overload
def workflow(
    target: str | None = None,
    /,
    *,
    name: str | None = None,
    conversation_id: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    budget_usd: float | Decimal | str | None = None,
    budget_tokens: int | None = None,
    budget_mode: str = "raise",
) -> _Operation: ...
def workflow(
    target: Callable[..., Any] | str | None = None,
    /,
    *,
    name: str | None = None,
    conversation_id: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    budget_usd: float | Decimal | str | None = None,
    budget_tokens: int | None = None,
    budget_mode: str = "raise",
) -> Any:
    """A workflow span, `invoke_workflow <name>`: the root of a multi-agent run."""
    return _operation(
        "workflow",
        target,
        name,
        {
            "conversation_id": conversation_id,
            "description": description,
            "attributes": attributes,
            "budget_usd": budget_usd,
            "budget_tokens": budget_tokens,
            "budget_mode": budget_mode,
        },
    )


@overload
def agent(target: F, /) -> F: ...
@overload
def agent(
    target: str | None = None,
    /,
    *,
    name: str | None = None,
    conversation_id: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    budget_usd: float | Decimal | str | None = None,
    budget_tokens: int | None = None,
    budget_mode: str = "raise",
) -> _Operation: ...
def agent(
    target: Callable[..., Any] | str | None = None,
    /,
    *,
    name: str | None = None,
    conversation_id: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    budget_usd: float | Decimal | str | None = None,
    budget_tokens: int | None = None,
    budget_mode: str = "raise",
) -> Any:
    """An agent span, `invoke_agent <name>`: the model calls made inside land under it."""
    return _operation(
        "agent",
        target,
        name,
        {
            "conversation_id": conversation_id,
            "description": description,
            "attributes": attributes,
            "budget_usd": budget_usd,
            "budget_tokens": budget_tokens,
            "budget_mode": budget_mode,
        },
    )


@overload
def tool(target: F, /) -> F: ...
@overload
def tool(
    target: str | None = None,
    /,
    *,
    name: str | None = None,
    conversation_id: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> _Operation: ...
def tool(
    target: Callable[..., Any] | str | None = None,
    /,
    *,
    name: str | None = None,
    conversation_id: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """A tool span, `execute_tool <name>`; with capture_content, its arguments and result."""
    return _operation(
        "tool",
        target,
        name,
        {"conversation_id": conversation_id, "description": description, "attributes": attributes, **_NO_BUDGET},
    )


@overload
def step(target: F, /) -> F: ...
@overload
def step(
    target: str | None = None,
    /,
    *,
    name: str | None = None,
    conversation_id: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> _Operation: ...
def step(
    target: Callable[..., Any] | str | None = None,
    /,
    *,
    name: str | None = None,
    conversation_id: str | None = None,
    description: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Any:
    """A plain span named `<name>`, for any other part of a workflow worth timing."""
    return _operation(
        "step",
        target,
        name,
        {"conversation_id": conversation_id, "description": description, "attributes": attributes, **_NO_BUDGET},
    )
