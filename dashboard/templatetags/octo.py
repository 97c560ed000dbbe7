"""Number formatting for the dashboard: dollars, tokens, durations. Everything goes through Django's
escaping; nothing here marks text safe."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

from django import template

register = template.Library()


@register.filter
def usd(value) -> str:
    """Dollars with enough decimals for sub-cent steps; None is "unpriced", never $0."""
    if value is None or value == "":
        return "unpriced"
    amount = Decimal(value)
    size = abs(amount)
    if size >= 1:
        places = 2
    elif size >= Decimal("0.01"):
        places = 4
    else:
        places = 6
    return f"${amount:,.{places}f}"


@register.filter
def usd_exact(value) -> str:
    """Every stored decimal place (tooltips, CSV-like precision)."""
    if value is None or value == "":
        return "unpriced"
    return f"${Decimal(value):f}"


@register.filter
def tokens(value) -> str:
    if value is None or value == "":
        return "–"
    return f"{int(value):,}"


@register.filter
def duration_ns(value) -> str:
    if value is None or value == "":
        return "–"
    seconds = int(value) / 1e9
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


@register.filter
def ns_datetime(value) -> str:
    if value is None or value == "":
        return "–"
    moment = datetime.fromtimestamp(int(value) / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


@register.filter
def percent(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{float(value) * 100:.{digits}f}%"


@register.simple_tag(takes_context=True)
def query(context, **changes) -> str:
    """The current query string with some parameters changed (None or "" drops one); page resets
    to 1 unless it is one of the changes."""
    params = context["request"].GET.copy()
    if "page" not in changes:
        params.pop("page", None)
    for name, value in changes.items():
        if value is None or value == "":
            params.pop(name, None)
        else:
            params[name] = value
    encoded = urlencode(sorted(params.items()))
    return f"?{encoded}" if encoded else "?"


@register.filter
def get_item(mapping, key):
    return mapping.get(key, ()) if mapping else ()
