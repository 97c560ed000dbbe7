"""Model prices and per-span cost, in Decimal.

cost = (input - cached - cache_write) x input price + cached x cached price
       + cache_write x write price + (output - reasoning) x output price
       + reasoning x reasoning price,             all prices per 1M tokens.

A span whose model has no price is unpriced: its cost is NULL, never 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path

from django.db import transaction
from django.db.models import F, Q

from tracer.models import ModelPrice, Project, Span
from tracer.rollup import traces_rollup

CATALOG = Path(__file__).resolve().parent / "data" / "prices.json"
PER_TOKENS = Decimal(1_000_000)
# The worker task that re-prices a project's stored calls after its prices changed (tracer/tasks.py).
REPRICE_TASK = "prices.reprice_project"
# Span costs are stored with 10 decimal places (a millionth of a cent is still visible).
QUANTUM = Decimal("0.0000000001")


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None


def usage_cost(usage: Usage, price: ModelPrice) -> Decimal:
    inputs = usage.input_tokens or 0
    cached = min(usage.cached_input_tokens or 0, inputs)
    written = min(usage.cache_write_tokens or 0, inputs - cached)
    outputs = usage.output_tokens or 0
    reasoning = min(usage.reasoning_tokens or 0, outputs)
    cached_price = price.input if price.cached_input is None else price.cached_input
    write_price = price.input if price.cache_write is None else price.cache_write
    reasoning_price = price.output if price.reasoning is None else price.reasoning
    total = (
        (inputs - cached - written) * price.input
        + cached * cached_price
        + written * write_price
        + (outputs - reasoning) * price.output
        + reasoning * reasoning_price
    )
    return (total / PER_TOKENS).quantize(QUANTUM)


def model_names(model: str) -> tuple[str, ...]:
    """The names a pattern is matched against: the full name and the one without "org/"."""
    lowered = model.strip().lower()
    bare = lowered.rsplit("/", 1)[-1]
    return (lowered,) if bare == lowered else (lowered, bare)


def _specificity(pattern: str) -> int:
    return sum(1 for c in pattern if c not in "*?[]")


class PriceBook:
    """The prices that apply to one project, loaded once, with lookups memoized.

    Precedence: a project override beats a default; a provider-specific price beats one for any
    provider; a more specific pattern beats a looser one; then the latest `valid_from` on or
    before the day of the call.
    """

    def __init__(self, *, project_id: int | None) -> None:
        scope = Q(project__isnull=True) | Q(project_id=project_id) if project_id else Q(project__isnull=True)
        self._prices = list(ModelPrice.objects.filter(scope))
        self._memo: dict[tuple[str, str, date], ModelPrice | None] = {}

    def find(self, *, provider: str, model: str, day: date) -> ModelPrice | None:
        key = (provider, model, day)
        if key not in self._memo:
            self._memo[key] = self._find(provider=provider.lower(), model=model, day=day)
        return self._memo[key]

    def _find(self, *, provider: str, model: str, day: date) -> ModelPrice | None:
        if not model:
            return None
        names = model_names(model)
        best: tuple[tuple, ModelPrice] | None = None
        for price in self._prices:
            if price.valid_from > day or (price.provider and price.provider != provider):
                continue
            if not any(fnmatchcase(name, price.model_pattern) for name in names):
                continue
            rank = (
                price.project_id is not None,
                bool(price.provider),
                _specificity(price.model_pattern),
                price.valid_from,
            )
            if best is None or rank > best[0]:
                best = (rank, price)
        return best[1] if best else None

    def cost(self, *, provider: str, model: str, start_time_unix_nano: int, usage: Usage) -> Decimal | None:
        if usage.input_tokens is None and usage.output_tokens is None:
            return None
        # Integer seconds: a float would round the last instant of a day up into the next one.
        day = datetime.fromtimestamp(start_time_unix_nano // 1_000_000_000, tz=UTC).date()
        price = self.find(provider=provider, model=model, day=day)
        return None if price is None else usage_cost(usage, price)


def prices_sync(*, path: Path = CATALOG, model: type[ModelPrice] = ModelPrice) -> tuple[int, int]:
    """Load the shipped catalog into the default prices (project NULL). Returns (created, updated).

    Upserts on (provider, pattern, valid_from), so a new price with a later valid_from adds
    history instead of rewriting the past. Project overrides are never touched.
    """
    try:
        catalog = json.loads(path.read_text())
        entries = catalog["prices"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError('"prices" is not a list of objects')
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read the price catalog {path}: {exc}") from None
    created = updated = 0
    with transaction.atomic():  # a bad entry leaves the table as it was
        for index, entry in enumerate(entries):
            try:
                was_created = _price_upsert(model, entry)
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                raise ValueError(f"price catalog {path}, entry {index}: bad or missing {exc}") from None
            created += was_created
            updated += not was_created
    return created, updated


def _price_upsert(model: type[ModelPrice], entry: dict) -> bool:
    values = {
        "input": _required(entry["input"]),
        "output": _required(entry["output"]),
        "cached_input": _decimal(entry.get("cached_input")),
        "cache_write": _decimal(entry.get("cache_write")),
        "reasoning": _decimal(entry.get("reasoning")),
        "source": entry.get("source", ""),
        "source_date": date.fromisoformat(entry["source_date"]) if entry.get("source_date") else None,
        "note": entry.get("note", ""),
    }
    _, created = model.objects.update_or_create(
        project=None,
        provider=(entry.get("provider") or "").lower(),
        model_pattern=entry["model"].lower(),
        valid_from=date.fromisoformat(entry["valid_from"]),
        defaults=values,
    )
    return created


def _required(value: str | None) -> Decimal:
    number = _decimal(value)
    if number is None:
        raise ValueError("price (a required price is empty)")
    return number


def _decimal(value: str | None) -> Decimal | None:
    if value is None or value == "":
        return None
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise ValueError(f"price {value!r} (not a finite, non-negative number)")
    return number


def spans_reprice(*, project_id: int | None = None, since_unix_nano: int | None = None) -> tuple[int, int]:
    """Recompute the cost of stored spans with today's prices, then their traces' rollups.
    Returns (spans whose cost changed, traces recomputed)."""
    spans = Span.objects.filter(Q(input_tokens__isnull=False) | Q(output_tokens__isnull=False))
    if project_id is not None:
        spans = spans.filter(project_id=project_id)
    if since_unix_nano is not None:
        spans = spans.filter(start_time_unix_nano__gte=since_unix_nano)
    changed_count = trace_count = 0
    for pid in spans.values_list("project_id", flat=True).distinct().order_by("project_id"):
        book = PriceBook(project_id=pid)
        changed: list[Span] = []
        traces: set[str] = set()
        fields = ("id", "trace_id", "provider", "model", "start_time_unix_nano", "cost", *USAGE_FIELDS)
        for row in spans.filter(project_id=pid).values(*fields).iterator(chunk_size=2000):
            usage = Usage(**{name: row[name] for name in USAGE_FIELDS})
            cost = book.cost(
                provider=row["provider"],
                model=row["model"],
                start_time_unix_nano=row["start_time_unix_nano"],
                usage=usage,
            )
            if cost != row["cost"]:
                changed.append(Span(id=row["id"], cost=cost))
                traces.add(row["trace_id"])
        trace_ids = sorted(traces)
        with transaction.atomic():
            Span.objects.bulk_update(changed, ["cost"], batch_size=1000)
            for i in range(0, len(trace_ids), 500):
                traces_rollup(project_id=pid, trace_ids=trace_ids[i : i + 500])
        changed_count += len(changed)
        trace_count += len(trace_ids)
    return changed_count, trace_count


USAGE_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")


def prices_effective(*, project: Project, day: date | None = None) -> list[ModelPrice]:
    """The prices in force on `day` (today by default) for this project: its overrides, then the
    defaults they leave, one row per (provider, model pattern), sorted by pattern."""
    day = day or datetime.now(tz=UTC).date()
    effective: dict[tuple[str, str], ModelPrice] = {}
    rows = ModelPrice.objects.filter(Q(project__isnull=True) | Q(project=project), valid_from__lte=day)
    # Defaults first, then overrides; within each, older first, so the last one written wins.
    for price in rows.order_by(F("project_id").asc(nulls_first=True), "valid_from"):
        effective[(price.provider, price.model_pattern)] = price
    return sorted(effective.values(), key=lambda p: (p.model_pattern, p.provider))
