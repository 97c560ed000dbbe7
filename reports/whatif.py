"""What-if pricing: what the billed calls of a trace, workflow or period would have cost on another
model or at another price. Nothing is written: stored costs stay as they are.

The calls re-priced are the billed spans of the given traces (only those of `from_model` when it
is named). Each is priced with its own stored usage (input, cached input, cache writes, output,
reasoning) by the same formula as ingest (tracer.pricing.usage_cost), at:
- another model: the price the project would pay for that model on the call's day and provider
  (project overrides first, then the defaults; a provider-specific price before an any-provider
  one), or
- a price you give per 1M tokens (input, cached input, output), or
- your own GPUs: $/GPU-hour and tokens/second give one price per 1M tokens for input and output
  alike: $/hour / (tokens/s x 3600) x 1M. (A simplification: prefill is cheaper than decode.)
Calls that are not re-priced keep their stored cost. A call unpriced now or under the new price
makes that side's total a lower bound (the counts say how many), and the saving is computed over
the calls priced on both sides only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import QuerySet

from reports.common import add, day_of, money, started_in
from tracer.models import ModelPrice, Project, Span, Trace
from tracer.pricing import PER_TOKENS, PriceBook, Usage, usage_cost

CHUNK = 2000


class BadScenario(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Scenario:
    """What to re-price and at what. Exactly one of target_model / price."""

    target_model: str = ""
    price: ModelPrice | None = None
    from_model: str = ""

    # How the price was given, for the label ("" for a target model).
    basis: str = ""

    @property
    def label(self) -> str:
        what = f"calls to {self.from_model}" if self.from_model else "all calls"
        if self.target_model:
            return f"{what} as if on {self.target_model}"
        return f"{what} {self.basis}"


def _decimal(name: str, value: Any, *, required: bool = True) -> Decimal | None:
    if value in (None, ""):
        if required:
            raise BadScenario(f"{name} is required")
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise BadScenario(f"{name}={value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise BadScenario(f"{name} must be a number, 0 or more")
    return number


def scenario_parse(*, params: Any) -> Scenario:
    """A scenario from form or query parameters: `target_model`, or `input_price`/`output_price`
    (`cached_input_price` optional), or `gpu_hourly_usd` with `tokens_per_second`; `from_model`
    optional. Raises BadScenario with a message for the user."""
    target = (params.get("target_model") or "").strip()
    from_model = (params.get("from_model") or "").strip()
    hourly = params.get("gpu_hourly_usd")
    given = params.get("input_price") not in (None, "") or params.get("output_price") not in (None, "")
    chosen = sum(bool(x) for x in (target, given, hourly not in (None, "")))
    if chosen != 1:
        raise BadScenario("choose one: a target model, prices per 1M tokens, or a GPU cost per hour")
    if target:
        return Scenario(target_model=target[:200], from_model=from_model)
    if given:
        input_price = _decimal("input_price", params.get("input_price"))
        output_price = _decimal("output_price", params.get("output_price"))
        cached = _decimal("cached_input_price", params.get("cached_input_price"), required=False)
        price = ModelPrice(input=input_price, cached_input=cached, output=output_price, model_pattern="what-if")
        cached_text = f"${cached} cached input" if cached is not None else "cached input at the input price"
        basis = f"at ${input_price} input, {cached_text}, ${output_price} output per 1M tokens"
        return Scenario(price=price, from_model=from_model, basis=basis)
    hourly_usd = _decimal("gpu_hourly_usd", hourly)
    tps = _decimal("tokens_per_second", params.get("tokens_per_second"))
    if not tps:
        raise BadScenario("tokens_per_second must be more than 0")
    per_million = (hourly_usd / (tps * 3600) * PER_TOKENS).quantize(Decimal("0.000001"))
    price = ModelPrice(input=per_million, output=per_million, model_pattern="own-gpus")
    basis = f"on your GPUs at ${hourly_usd}/GPU-hour and {tps} tokens/s: ${per_million} per 1M tokens"
    return Scenario(price=price, from_model=from_model, basis=basis)


@dataclass(slots=True)
class _Side:
    calls: int = 0
    repriced: int = 0
    current: Decimal | None = None
    whatif: Decimal | None = None
    current_unpriced: int = 0
    whatif_unpriced: int = 0
    # Over the calls priced both now and in the scenario: the only fair comparison.
    saving: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        saving = self.saving
        return {
            "calls": self.calls,
            "repriced_calls": self.repriced,
            "current_usd": money(self.current),
            "whatif_usd": money(self.whatif),
            "saving_usd": money(saving),
            "current_unpriced_calls": self.current_unpriced,
            "whatif_unpriced_calls": self.whatif_unpriced,
        }


def whatif_compute(*, project: Project, traces: QuerySet[Trace], scenario: Scenario) -> dict[str, Any]:
    """Current and what-if cost of the billed calls of these traces, in total, by agent and by
    model. Reads only."""
    prices = PriceBook(project_id=project.pk)
    spans = (
        Span.objects.filter(project=project, billed=True, trace_id__in=traces.values("trace_id"))
        .order_by()
        .values_list(
            "agent_name",
            "model",
            "provider",
            "start_time_unix_nano",
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "cost",
        )
    )
    total = _Side()
    by_agent: dict[str, _Side] = defaultdict(_Side)
    by_model: dict[str, _Side] = defaultdict(_Side)
    for agent, model, provider, start, inputs, outputs, cached, written, reasoning, cost in spans.iterator(
        chunk_size=CHUNK
    ):
        substitute = not scenario.from_model or model == scenario.from_model
        new_cost = cost
        if substitute:
            if scenario.price is not None:
                price = scenario.price
            else:
                price = prices.find(provider=provider, model=scenario.target_model, day=day_of(start))
            usage = Usage(inputs, outputs, cached, written, reasoning)
            new_cost = None if price is None else usage_cost(usage, price)
        for side in (total, by_agent[agent or ""], by_model[model or ""]):
            side.calls += 1
            side.repriced += substitute
            side.current = add(side.current, cost)
            side.whatif = add(side.whatif, new_cost)
            side.current_unpriced += cost is None
            side.whatif_unpriced += new_cost is None
            if cost is not None and new_cost is not None:
                side.saving = add(side.saving, cost - new_cost)
    return {
        "scenario": scenario.label,
        "totals": total.as_dict(),
        "by_agent": [{"agent": name, **side.as_dict()} for name, side in sorted(by_agent.items())],
        "by_model": [{"model": name, **side.as_dict()} for name, side in sorted(by_model.items())],
    }


def models_seen(*, project: Project, start_ns: int | None, end_ns: int | None, limit: int = 200) -> list[str]:
    """The models of the billed calls that started in [start_ns, end_ns): the page's scenario picker."""
    billed = started_in(Span.objects.filter(project=project, billed=True), start_ns=start_ns, end_ns=end_ns)
    return list(billed.exclude(model="").values_list("model", flat=True).distinct().order_by("model")[:limit])
