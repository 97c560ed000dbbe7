"""Model prices and per-span cost, in Decimal.

cost = (input - cached - cache_write) x input price + cached x cached price
       + cache_write x write price + (output - reasoning) x output price
       + reasoning x reasoning price,             all prices per 1M tokens.

A span whose model has no price is unpriced: its cost is NULL, never 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet

from tracer.audit import Action, audit_record
from tracer.celery import task_enqueue
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


# --- Price records: one validation for the shipped catalog and for project overrides ------------

PRICE_FIELDS = ("input", "cached_input", "cache_write", "output", "reasoning")
REQUIRED_PRICES = ("input", "output")
# The limits are the columns': at most `decimal_places` decimals, and below
# 10 ** (max_digits - decimal_places) USD per 1M tokens, so what is accepted is stored exactly.
_PRICE_COLUMN = ModelPrice._meta.get_field("input")
PRICE_PLACES: int = _PRICE_COLUMN.decimal_places
PRICE_STEP = Decimal(1).scaleb(-PRICE_PLACES)
PRICE_LIMIT = Decimal(10) ** (_PRICE_COLUMN.max_digits - PRICE_PLACES)
PATTERN_MAX_LENGTH: int = ModelPrice._meta.get_field("model_pattern").max_length
PROVIDER_MAX_LENGTH: int = ModelPrice._meta.get_field("provider").max_length
# An override typed without a date applies to every stored call.
OVERRIDE_VALID_FROM = date(2000, 1, 1)
OVERRIDE_SOURCE = "project override"
OVERRIDE_EXISTS = "An override for this provider, model pattern and date exists: delete it first."
# A catalog entry names its pattern "model".
CATALOG_KEYS = {"model_pattern": "model"}

PriceValue = str | int | float | Decimal | None
DateValue = str | date | None


class PriceInvalid(ValueError):
    """A price the rules refuse. `errors` maps each field (`NON_FIELD_ERRORS` for the row as a
    whole) to its messages, written for the person who typed the price."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__(self.describe())

    @property
    def messages(self) -> list[str]:
        return [message for messages in self.errors.values() for message in messages]

    def describe(self, names: dict[str, str] | None = None) -> str:
        """One line, each message after its field's name (renamed through `names`)."""
        names = names or {}
        return "; ".join(
            f"{names.get(field, field)}: {message}" for field, messages in self.errors.items() for message in messages
        )


def price_clean(
    *,
    model_pattern: str | None,
    provider: str | None = "",
    input: PriceValue,
    output: PriceValue,
    cached_input: PriceValue = None,
    cache_write: PriceValue = None,
    reasoning: PriceValue = None,
    valid_from: DateValue,
    source_date: DateValue = None,
    valid_from_default: date | None = None,
) -> dict[str, Any]:
    """The fields of one price, checked and normalized (pattern and provider lower case, prices
    as Decimal with the column's decimals, dates as dates): the rules `syncprices` applies to the
    catalog and the dashboard to a project override. Raises PriceInvalid with every reason at once.

    An empty value is a missing one; a missing `valid_from` is `valid_from_default` if given.
    """
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {
        "model_pattern": _text(errors, "model_pattern", "Model pattern", model_pattern, PATTERN_MAX_LENGTH),
        "provider": _text(errors, "provider", "Provider", provider, PROVIDER_MAX_LENGTH),
    }
    if not values["model_pattern"] and "model_pattern" not in errors:
        errors["model_pattern"] = ["Model pattern is required."]
    prices = {
        "input": input,
        "cached_input": cached_input,
        "cache_write": cache_write,
        "output": output,
        "reasoning": reasoning,
    }
    for name in PRICE_FIELDS:
        values[name] = _price(errors, name, prices[name])
    values["valid_from"] = _date(errors, "valid_from", "Valid from", valid_from, valid_from_default)
    values["source_date"] = _date(errors, "source_date", "Source date", source_date, None, required=False)
    if errors:
        raise PriceInvalid(errors)
    return values


def _text(errors: dict[str, list[str]], field: str, label: str, value: object, max_length: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        errors[field] = [f"{label} must be text, not {value!r}."]
        return ""
    text = value.strip().lower()
    if len(text) > max_length:
        errors[field] = [f"{label} is longer than {max_length} characters."]
    return text


def _price(errors: dict[str, list[str]], field: str, value: object) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if field in REQUIRED_PRICES:
            errors[field] = [f"The {field} price is required."]
        return None
    raw = value.strip() if isinstance(value, str) else value
    label = field.replace("_", " ")
    try:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
            raise InvalidOperation
        # A JSON number arrives as a float: its shortest repr is the number that was written.
        price = Decimal(repr(raw) if isinstance(raw, float) else raw)
        if not price.is_finite() or price < 0 or price >= PRICE_LIMIT:
            raise InvalidOperation
    except InvalidOperation:
        errors[field] = [f"The {label} price {raw!r} is not a non-negative number below {PRICE_LIMIT:,}."]
        return None
    # Refused rather than rounded: a price is stored exactly as written, or not at all.
    if price.quantize(PRICE_STEP) != price:
        errors[field] = [f"The {label} price {raw!r} has more than {PRICE_PLACES} decimal places."]
        return None
    return price.quantize(PRICE_STEP).copy_abs()  # copy_abs: "-0" is 0


def _date(
    errors: dict[str, list[str]],
    field: str,
    label: str,
    value: object,
    default: date | None,
    *,
    required: bool = True,
) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if default is None and required:
            errors[field] = [f"{label} is required."]
        return default
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return date.fromisoformat(value.strip())
    except ValueError:
        errors[field] = [f"{label} must be a date (YYYY-MM-DD)."]
        return None


def price_override_create(
    *,
    project: Project,
    model_pattern: str,
    input: PriceValue,
    output: PriceValue,
    provider: str = "",
    cached_input: PriceValue = None,
    cache_write: PriceValue = None,
    reasoning: PriceValue = None,
    valid_from: DateValue = None,
    note: str = "",
    actor: AbstractBaseUser | None = None,
) -> ModelPrice:
    """The project's own price for the models matching `model_pattern`, from `valid_from` on
    (every stored call when no date is given). Raises PriceInvalid with the reasons, also when the
    project has an override for this provider, pattern and date. Once the row is committed, the
    worker re-prices the project's stored calls. Audited."""
    values = price_clean(
        model_pattern=model_pattern,
        provider=provider,
        input=input,
        output=output,
        cached_input=cached_input,
        cache_write=cache_write,
        reasoning=reasoning,
        valid_from=valid_from,
        valid_from_default=OVERRIDE_VALID_FROM,
    )
    try:
        # A savepoint: the caller's transaction stays usable after a duplicate.
        with transaction.atomic():
            price = ModelPrice.objects.create(project=project, source=OVERRIDE_SOURCE, note=note.strip(), **values)
            audit_record(
                project=project,
                actor=actor,
                action=Action.PRICE_CREATE,
                target=_price_target(price),
                details=_price_details(price),
            )
    except IntegrityError:
        # price_project_uniq; checked by the database, so two owners saving at once cannot both win.
        raise PriceInvalid({NON_FIELD_ERRORS: [OVERRIDE_EXISTS]}) from None
    task_enqueue(REPRICE_TASK, project.pk)
    return price


def price_override_delete(*, project: Project, price_id: int, actor: AbstractBaseUser | None = None) -> None:
    """Delete one of the project's overrides (audited); the catalog's prices and other projects'
    overrides are not found (ModelPrice.DoesNotExist). The worker then re-prices the project's
    stored calls."""
    with transaction.atomic():
        price = ModelPrice.objects.select_for_update().filter(project=project, pk=price_id).first()
        if price is None:
            raise ModelPrice.DoesNotExist(f"no price override {price_id} in project {project.pk}")
        details = _price_details(price)
        price.delete()
        audit_record(
            project=project, actor=actor, action=Action.PRICE_DELETE, target=_price_target(price), details=details
        )
    task_enqueue(REPRICE_TASK, project.pk)


def _price_target(price: ModelPrice) -> str:
    return f"price {price.provider or '*'}/{price.model_pattern} from {price.valid_from}"


def _price_details(price: ModelPrice) -> dict[str, str | None]:
    """The override's prices as decimal strings (USD per 1M tokens), None where it falls back."""
    fields = ("input", "cached_input", "cache_write", "output", "reasoning")
    values = {name: getattr(price, name) for name in fields}
    return {name: None if value is None else str(value) for name, value in values.items()} | {"note": price.note}


def prices_sync(*, path: Path = CATALOG, model: type[ModelPrice] = ModelPrice) -> tuple[int, int]:
    """Load the shipped catalog into the default prices (project NULL). Returns (created, updated).

    Upserts on (provider, pattern, valid_from), so a new price with a later valid_from adds
    history instead of rewriting the past. Project overrides are never touched. Each entry is
    checked by `price_clean`, like a project override.
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
            except PriceInvalid as exc:
                raise ValueError(f"price catalog {path}, entry {index}: {exc.describe(CATALOG_KEYS)}") from None
            created += was_created
            updated += not was_created
    return created, updated


def _price_upsert(model: type[ModelPrice], entry: dict) -> bool:
    values = price_clean(
        model_pattern=entry.get("model"),
        provider=entry.get("provider"),
        input=entry.get("input"),
        output=entry.get("output"),
        cached_input=entry.get("cached_input"),
        cache_write=entry.get("cache_write"),
        reasoning=entry.get("reasoning"),
        valid_from=entry.get("valid_from"),
        source_date=entry.get("source_date"),
    )
    key = {name: values.pop(name) for name in ("provider", "model_pattern", "valid_from")}
    values.update(source=entry.get("source") or "", note=entry.get("note") or "")
    _, created = model.objects.update_or_create(project=None, **key, defaults=values)
    return created


def spans_priced(*, project_id: int | None = None, since_unix_nano: int | None = None) -> QuerySet[Span]:
    """The spans `spans_reprice` walks: those with usage, in a project and time range."""
    spans = Span.objects.filter(Q(input_tokens__isnull=False) | Q(output_tokens__isnull=False))
    if project_id is not None:
        spans = spans.filter(project_id=project_id)
    if since_unix_nano is not None:
        spans = spans.filter(start_time_unix_nano__gte=since_unix_nano)
    return spans


def spans_reprice(
    *,
    project_id: int | None = None,
    since_unix_nano: int | None = None,
    chunk: int = 5000,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Recompute the cost of stored spans with today's prices, then their traces' rollups.

    Walks the spans in id order, `chunk` at a time; each chunk's new costs and the rollups of its
    traces commit together, so an interrupted run leaves consistent data, and a rerun resumes for free
    (spans already repriced compare equal and are not written again). `on_chunk(n)` is told how many
    spans each chunk read (a progress bar). Returns (spans whose cost changed, trace rollups recomputed).
    """
    spans = spans_priced(project_id=project_id, since_unix_nano=since_unix_nano)
    fields = ("id", "project_id", "trace_id", "provider", "model", "start_time_unix_nano", "cost", *USAGE_FIELDS)
    books: dict[int, PriceBook] = {}
    changed_count = trace_count = 0
    after = 0
    while True:
        with transaction.atomic():
            rows = list(spans.filter(id__gt=after).order_by("id").values(*fields)[:chunk])
            if not rows:
                break
            changed: list[Span] = []
            traces: dict[int, set[str]] = {}
            for row in rows:
                book = books.get(row["project_id"])
                if book is None:
                    book = books[row["project_id"]] = PriceBook(project_id=row["project_id"])
                cost = book.cost(
                    provider=row["provider"],
                    model=row["model"],
                    start_time_unix_nano=row["start_time_unix_nano"],
                    usage=Usage(**{name: row[name] for name in USAGE_FIELDS}),
                )
                if cost != row["cost"]:
                    changed.append(Span(id=row["id"], cost=cost))
                    traces.setdefault(row["project_id"], set()).add(row["trace_id"])
            Span.objects.bulk_update(changed, ["cost"], batch_size=1000)
            for pid, trace_ids in sorted(traces.items()):
                ordered = sorted(trace_ids)
                for i in range(0, len(ordered), 500):
                    traces_rollup(project_id=pid, trace_ids=ordered[i : i + 500])
                trace_count += len(ordered)
        changed_count += len(changed)
        after = rows[-1]["id"]
        if on_chunk is not None:
            on_chunk(len(rows))
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
