"""What a GPU-hour costs, and endpoints (a self-hosted deployment and the GPUs that serve it)."""

from __future__ import annotations

import fnmatch
import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from django.db import transaction

from tracer.models import Endpoint, GpuDevice, Project

PRICES_FILE = Path(__file__).resolve().parent.parent / "data" / "gpu_prices.json"


@cache
def default_prices() -> list[tuple[str, Decimal]]:
    document = json.loads(PRICES_FILE.read_text())
    return [(row["pattern"], Decimal(row["usd_per_gpu_hour"])) for row in document["prices"]]


def gpu_default_price(*, gpu_name: str) -> Decimal | None:
    """USD per GPU-hour for an NVML device name, or None when the model is not in the catalog."""
    name = gpu_name.lower()
    for pattern, price in default_prices():
        if fnmatch.fnmatchcase(name, pattern):
            return price
    return None


def endpoint_gpu_prices(*, endpoint: Endpoint, devices: list[GpuDevice]) -> dict[int, Decimal | None]:
    """USD per hour for each device of an endpoint: the endpoint's own price, else the default."""
    if endpoint.gpu_hour_price is not None:
        return {d.pk: endpoint.gpu_hour_price for d in devices}
    return {d.pk: gpu_default_price(gpu_name=d.name) for d in devices}


def address_from_url(url: str) -> tuple[str, int]:
    """`http://nim.internal:8000/v1` -> ("nim.internal", 8000); port 0 when the URL names none."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host name")
    return parts.hostname.lower(), parts.port or 0


@transaction.atomic
def endpoint_upsert(
    *,
    project: Project,
    name: str,
    base_url: str,
    device_uuids: list[str],
    gpu_hour_price: Decimal | None = None,
    electricity_kwh_price: Decimal | None = None,
) -> Endpoint:
    """Create or update the endpoint for a base URL and set the GPUs that serve it. Raises
    ValueError for a URL without a host, an unknown GPU UUID, or a negative price."""
    address, port = address_from_url(base_url)
    for label, price in (("GPU-hour price", gpu_hour_price), ("electricity price", electricity_kwh_price)):
        if price is not None and (not price.is_finite() or price < 0):
            raise ValueError(f"{label} must be a finite number >= 0, not {price}")
    devices = list(GpuDevice.objects.filter(project=project, uuid__in=device_uuids))
    missing = sorted(set(device_uuids) - {d.uuid for d in devices})
    if missing:
        raise ValueError(f"no GPU with UUID {', '.join(missing)} in project {project.slug} (has it sent samples?)")
    endpoint, _ = Endpoint.objects.update_or_create(
        project=project,
        server_address=address,
        server_port=port,
        defaults={
            "name": name,
            "base_url": base_url,
            "gpu_hour_price": gpu_hour_price,
            "electricity_kwh_price": electricity_kwh_price,
        },
    )
    endpoint.devices.set(devices)
    return endpoint
