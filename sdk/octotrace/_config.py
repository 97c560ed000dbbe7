"""The SDK's configuration: `init()`'s arguments, else the environment, and the effective result.

Every option can come from the environment (OCTOTRACE_*, else the standard OTEL_* variables), so
`octotrace.init()` with no arguments is enough in a deployed agent. The effective configuration is
`config()`, set by `init`/`shutdown` (octotrace._setup) and read by the instrumentation
(capture_content). The GPU agent reads the same variables through `env` and `parse_headers`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

TRACES_PATH = "/v1/traces"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration of the running SDK (the defaults until `init`)."""

    endpoint: str | None = None  # the server's base URL (prices); None when only an OTLP URL is known
    traces_endpoint: str | None = None  # where spans are POSTed
    api_key: str | None = None
    headers: Mapping[str, str] | None = None
    service_name: str | None = None
    capture_content: bool = False
    instrument: bool = True
    fetch_prices: bool = True
    initialized: bool = False


_config = Config()


def config() -> Config:
    """The effective configuration (the defaults until `init`)."""
    return _config


def config_set(cfg: Config) -> None:
    """Make `cfg` the effective configuration (`init` and `shutdown` only)."""
    global _config
    _config = cfg


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env(name: str) -> str | None:
    """The variable's value, stripped; None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def parse_headers(raw: str | None) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS: `key=value,key2=value2`, values URL-encoded (W3C baggage format)."""
    headers: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"malformed OTLP header {item!r} (expected key=value)")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def resolve(
    *,
    endpoint: str | None,
    api_key: str | None,
    service_name: str | None,
    capture_content: bool | None,
    instrument: bool,
    fetch_prices: bool,
) -> Config:
    traces_endpoint = None
    endpoint = endpoint or env("OCTOTRACE_ENDPOINT")
    if endpoint is None and (otlp_traces := env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        # A full signal URL, used as is; the server's base URL is recovered when it is ours.
        traces_endpoint = otlp_traces
        if otlp_traces.rstrip("/").endswith(TRACES_PATH):
            endpoint = otlp_traces.rstrip("/")[: -len(TRACES_PATH)]
    elif endpoint is None:
        endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is not None:
        endpoint = endpoint.rstrip("/")
        traces_endpoint = traces_endpoint or endpoint + TRACES_PATH

    headers = parse_headers(env("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env("OTEL_EXPORTER_OTLP_HEADERS"))
    api_key = api_key or env("OCTOTRACE_API_KEY")
    if api_key is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            api_key = token.strip()
    if api_key is not None:
        headers["authorization"] = f"Bearer {api_key}"

    if capture_content is None:
        capture_content = env_bool("OCTOTRACE_CAPTURE_CONTENT")
    if not service_name:
        service_name = env("OTEL_SERVICE_NAME")
    if not service_name:
        script = sys.argv[0] if sys.argv else ""
        # "-c" and "" (interactive) name no script: the resource says unknown_service.
        service_name = Path(script).stem if script and not script.startswith("-") else None
    return Config(
        endpoint=endpoint,
        traces_endpoint=traces_endpoint,
        api_key=api_key,
        headers=headers,
        service_name=service_name,
        capture_content=capture_content,
        instrument=instrument,
        fetch_prices=fetch_prices,
        initialized=True,
    )
