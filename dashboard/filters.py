"""The time range every project page is filtered by (`?range=7d`, or `?from=...&to=...`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from django.core.exceptions import BadRequest
from django.http import HttpRequest
from django.utils import timezone

from reports.common import started_in

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
DEFAULT_RANGE = "7d"
NS = 1_000_000_000


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_ns: int | None  # None: from the beginning ("all")
    end_ns: int | None  # None: up to now and beyond
    label: str
    params: dict[str, str]

    @property
    def querystring(self) -> str:
        return urlencode(self.params)

    @property
    def seconds(self) -> float | None:
        if self.start_ns is None:
            return None
        end = self.end_ns if self.end_ns is not None else _ns(timezone.now())
        return (end - self.start_ns) / NS

    def filter(self, queryset, field: str = "start_time_unix_nano"):
        return started_in(queryset, start_ns=self.start_ns, end_ns=self.end_ns, field=field)

    @classmethod
    def from_request(cls, request: HttpRequest) -> TimeRange:
        """Raises BadRequest (a 400) with the reason on a value it cannot read."""
        first, last = request.GET.get("from", ""), request.GET.get("to", "")
        if first or last:
            start = _day(first, "from") if first else None
            end = _day(last, "to") + timedelta(days=1) if last else None
            if start and end and end <= start:
                raise BadRequest("'to' is before 'from'")
            params = {k: v for k, v in (("from", first), ("to", last)) if v}
            label = f"{first or '…'} to {last or 'now'}"
            return cls(
                start_ns=_ns(start) if start else None, end_ns=_ns(end) if end else None, label=label, params=params
            )
        name = request.GET.get("range", DEFAULT_RANGE)
        if name == "all":
            return cls(start_ns=None, end_ns=None, label="all time", params={"range": "all"})
        if name not in RANGES:
            raise BadRequest(f"range={name!r}: use one of {', '.join([*RANGES, 'all'])}, or from=/to= dates")
        start = timezone.now() - RANGES[name]
        return cls(start_ns=_ns(start), end_ns=None, label=f"last {name}", params={"range": name})


def _day(value: str, name: str) -> datetime:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}={value!r} is not a date (YYYY-MM-DD)") from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
