"""Helpers the reports share: time buckets, GPU cost columns, money as JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import FieldDoesNotExist

from tracer.models import Span, Trace

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND


def has_gpu_cost() -> bool:
    """Whether the GPU telemetry issue's nullable `gpu_cost` columns exist on Trace and Span."""
    try:
        Trace._meta.get_field("gpu_cost")
        Span._meta.get_field("gpu_cost")
    except FieldDoesNotExist:
        return False
    return True


def day_of(ns: int) -> date:
    # Integer seconds: a float would round the last instant of a day into the next one.
    return datetime.fromtimestamp(ns // NS_PER_SECOND, tz=UTC).date()


def week_of(ns: int) -> date:
    """The Monday (UTC) of the ISO week holding this instant."""
    day = day_of(ns)
    return day - timedelta(days=day.weekday())


def iso(ns: int) -> str:
    moment = datetime.fromtimestamp(ns // NS_PER_SECOND, tz=UTC)
    return moment.replace(microsecond=(ns % NS_PER_SECOND) // 1000).isoformat().replace("+00:00", "Z")


def date_ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * NS_PER_SECOND


def add(total: Decimal | None, value: Decimal | None) -> Decimal | None:
    """Sum of money where None means "nothing priced yet" (never read as $0)."""
    if value is None:
        return total
    return value if total is None else total + value


def money(value: Decimal | None) -> str | None:
    """Decimal -> JSON (a string, so nothing is rounded through a float)."""
    return None if value is None else str(value)


def unmoney(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)
