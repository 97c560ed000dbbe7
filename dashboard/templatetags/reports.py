"""Formatting for the reports' figures, which are None when they cannot be computed (no value
entered, no successful run): shown as a dash, never as $0."""

from __future__ import annotations

from decimal import Decimal

from django import template

from dashboard.templatetags.octo import usd

register = template.Library()


@register.filter
def usd_or_dash(value) -> str:
    if value is None or value == "":
        return "–"
    amount = Decimal(value)
    return "-" + usd(-amount) if amount < 0 else usd(amount)


@register.filter
def pct_or_dash(value) -> str:
    """A percentage already multiplied by 100 (ROI %)."""
    return "–" if value is None or value == "" else f"{Decimal(value):,.2f}%"
