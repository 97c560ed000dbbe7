"""Budget guards: stop a runaway workflow before its next model call once its budget is spent.

A budget is opened by `octotrace.workflow(..., budget_usd=..., budget_tokens=...)` (or agent)
and lives in a context variable, so it follows the work into threads (with copied context) and
asyncio tasks. Budgets nest: every enclosing budget is charged and checked. The cost of a call
is computed locally from the price table (fetched from the server at init, bundled fallback).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from opentelemetry.trace import Span

from octotrace import _prices

log = logging.getLogger("octotrace")

ATTR_BUDGET_USD = "octotrace.budget.usd"
ATTR_BUDGET_TOKENS = "octotrace.budget.tokens"
ATTR_SPENT_USD = "octotrace.budget.spent_usd"
ATTR_SPENT_TOKENS = "octotrace.budget.spent_tokens"
ATTR_EXCEEDED = "octotrace.budget.exceeded"
ATTR_UNPRICED_CALLS = "octotrace.budget.unpriced_calls"


class BudgetExceeded(RuntimeError):
    """Raised before a model call once an enclosing budget is spent (mode "raise")."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        parts = []
        if budget.limit_usd is not None:
            parts.append(f"${budget.spent_usd:.6f} of ${budget.limit_usd} spent")
        if budget.limit_tokens is not None:
            parts.append(f"{budget.spent_tokens} of {budget.limit_tokens} tokens used")
        super().__init__(f"budget of {budget.name!r} exhausted: {', '.join(parts)}")


@dataclass(eq=False)
class Budget:
    name: str
    limit_usd: Decimal | None
    limit_tokens: int | None
    mode: str  # "raise" or "warn"
    span: Span | None = None
    spent_usd: Decimal = Decimal(0)
    spent_tokens: int = 0
    unpriced_calls: int = 0
    warned: bool = False
    # Threads of one workflow charge the same budget.
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def exhausted(self) -> bool:
        return (self.limit_usd is not None and self.spent_usd >= self.limit_usd) or (
            self.limit_tokens is not None and self.spent_tokens >= self.limit_tokens
        )


_active: contextvars.ContextVar[tuple[Budget, ...]] = contextvars.ContextVar("octotrace_budgets", default=())


def active() -> tuple[Budget, ...]:
    """The budgets open in this context, outermost first (empty outside any budgeted workflow)."""
    return _active.get()


@contextmanager
def open_budget(
    *, name: str, span: Span | None, usd: float | Decimal | str | None, tokens: int | None, mode: str = "raise"
) -> Iterator[Budget | None]:
    """Enter a budget for the duration of a workflow/agent span. Yields None when no limit is set."""
    if usd is None and tokens is None:
        yield None
        return
    if mode not in ("raise", "warn"):
        raise ValueError(f"budget mode must be 'raise' or 'warn', not {mode!r}")
    budget = Budget(
        name=name,
        limit_usd=None if usd is None else Decimal(str(usd)),
        limit_tokens=tokens,
        mode=mode,
        span=span,
    )
    if span is not None:
        if budget.limit_usd is not None:
            span.set_attribute(ATTR_BUDGET_USD, float(budget.limit_usd))
        if tokens is not None:
            span.set_attribute(ATTR_BUDGET_TOKENS, tokens)
    token = _active.set((*_active.get(), budget))
    try:
        yield budget
    finally:
        _active.reset(token)
        _record(budget)


def check_before_call() -> None:
    """Called by the instrumentation before each model call: raise (or warn) if a budget is spent."""
    for budget in _active.get():
        if not budget.exhausted:
            continue
        if budget.span is not None:
            budget.span.set_attribute(ATTR_EXCEEDED, True)
        if budget.mode == "raise":
            raise BudgetExceeded(budget)
        if not budget.warned:
            budget.warned = True
            log.warning("octotrace: %s (warn mode: the call goes ahead)", BudgetExceeded(budget))


def charge(
    *,
    model: str,
    provider: str = "",
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> Decimal | None:
    """Called by the instrumentation after each model call with its usage. Returns the call's
    cost (None when the model has no price: its tokens still count against a token budget)."""
    budgets = _active.get()
    if not budgets:
        return None
    cost = _prices.cost(
        model=model,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=reasoning_tokens,
    )
    tokens = (input_tokens or 0) + (output_tokens or 0)
    for budget in budgets:
        with budget.lock:
            budget.spent_tokens += tokens
            if cost is None:
                budget.unpriced_calls += 1
            else:
                budget.spent_usd += cost
        _record(budget)
    return cost


def _record(budget: Budget) -> None:
    if budget.span is None or not budget.span.is_recording():
        return
    budget.span.set_attribute(ATTR_SPENT_USD, float(budget.spent_usd))
    budget.span.set_attribute(ATTR_SPENT_TOKENS, budget.spent_tokens)
    budget.span.set_attribute(ATTR_UNPRICED_CALLS, budget.unpriced_calls)
