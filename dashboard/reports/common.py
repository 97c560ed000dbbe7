"""Helpers the reports share: time buckets, API cost of self-hosted calls, money as JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet, Sum

from tracer.models import Project, Span, Trace

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND


def self_hosted_api_cost(*, project: Project, traces: QuerySet[Trace]) -> dict[str, Decimal]:
    """trace_id -> the API price of its billed calls that were served by our own GPUs (they carry a
    GPU cost). Those calls cost their GPU time, not the API price: money counts one or the other."""
    served = Span.objects.filter(
        project=project, billed=True, gpu_cost__isnull=False, cost__isnull=False, trace_id__in=traces.values("trace_id")
    )
    return dict(served.values("trace_id").annotate(api=Sum("cost")).values_list("trace_id", "api").order_by())


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
