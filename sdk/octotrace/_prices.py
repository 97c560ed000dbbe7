"""Model prices for local cost estimates (budget guards).

The server's effective prices (`GET /api/v1/prices`, project overrides included) are fetched
once at init; without a server, the catalog bundled with the package is used. The matching rules
are the server's (tracer/pricing.py), restated here because the SDK must not depend on the server:
provider-specific over any provider, the most specific pattern, matched against the model name
with and without its "org/" prefix. Money is Decimal.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase
from importlib import resources

log = logging.getLogger("octotrace")
PER_TOKENS = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    provider: str
    pattern: str
    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal


_table: list[Price] = []
_source = "none"


def _price(entry: dict) -> Price:
    def dec(key: str, fallback: Decimal | None = None) -> Decimal:
        value = entry.get(key)
        if value in (None, ""):
            if fallback is None:
                raise ValueError(f"price entry without {key}")
            return fallback
        return Decimal(str(value))

    price_in = dec("input")
    price_out = dec("output")
    return Price(
        provider=(entry.get("provider") or "").lower(),
        pattern=(entry.get("model_pattern") or entry.get("model") or "").lower(),
        input=price_in,
        cached_input=dec("cached_input", price_in),
        cache_write=dec("cache_write", price_in),
        output=price_out,
        reasoning=dec("reasoning", price_out),
    )


def load_bundled() -> None:
    global _table, _source
    catalog = json.loads(resources.files("octotrace").joinpath("data/prices.json").read_text())
    # The bundled catalog keeps history: keep the latest price of each (provider, pattern).
    latest: dict[tuple[str, str], dict] = {}
    for entry in sorted(catalog["prices"], key=lambda e: e.get("valid_from", "")):
        latest[((entry.get("provider") or "").lower(), entry["model"].lower())] = entry
    _table = [_price(e) for e in latest.values()]
    _source = "bundled"


def load_from_server(*, endpoint: str, api_key: str, timeout: float = 3.0) -> bool:
    """Fetch the effective prices of the key's project; on any failure use the bundled table."""
    global _table, _source
    request = urllib.request.Request(
        f"{endpoint.rstrip('/')}/api/v1/prices", headers={"Authorization": f"Bearer {api_key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read())["data"]
        _table = [_price(entry) for entry in data]
        _source = "server"
        return True
    except Exception as exc:  # noqa: BLE001 - any network or format problem: fall back, say so once
        # Info, not a warning: an unreachable server is reported once, by the span exporter.
        log.info("octotrace: could not fetch prices from %s (%s); using the bundled catalog", endpoint, exc)
        load_bundled()  # not a table fetched earlier, which may be another project's
        return False


def source() -> str:
    return _source


def find(*, model: str, provider: str = "") -> Price | None:
    if not _table:
        load_bundled()
    lowered = model.strip().lower()
    names = {lowered, lowered.rsplit("/", 1)[-1]}
    provider = provider.lower()
    best: tuple[tuple[bool, int], Price] | None = None
    for price in _table:
        if price.provider and price.provider != provider:
            continue
        if not any(fnmatchcase(name, price.pattern) for name in names):
            continue
        rank = (bool(price.provider), sum(1 for c in price.pattern if c not in "*?[]"))
        if best is None or rank > best[0]:
            best = (rank, price)
    return best[1] if best else None


def cost(
    *,
    model: str,
    provider: str = "",
    input_tokens: int | None,
    output_tokens: int | None,
    cached_input_tokens: int | None = None,
    cache_write_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> Decimal | None:
    """The call's cost in USD, or None when the model has no price."""
    price = find(model=model, provider=provider)
    if price is None:
        return None
    inputs = input_tokens or 0
    cached = min(cached_input_tokens or 0, inputs)
    written = min(cache_write_tokens or 0, inputs - cached)
    outputs = output_tokens or 0
    reasoning = min(reasoning_tokens or 0, outputs)
    total = (
        (inputs - cached - written) * price.input
        + cached * price.cached_input
        + written * price.cache_write
        + (outputs - reasoning) * price.output
        + reasoning * price.reasoning
    )
    return total / PER_TOKENS
