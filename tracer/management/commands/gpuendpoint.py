from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from tracer.gpu.prices import endpoint_gpu_prices, endpoint_upsert
from tracer.models import Endpoint, GpuDevice, Project


def _price(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise CommandError(f"{value!r} is not a number") from None


class Command(BaseCommand):
    help = (
        "Map a self-hosted model endpoint (its base URL, as LLM spans record it in server.address) to the "
        "GPUs that serve it, for GPU attribution. Without --base-url, list the project's GPUs and endpoints."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--base-url", help="e.g. http://nim.internal:8000/v1 (no port: any port)")
        parser.add_argument("--name", help="a name for the endpoint (default: the base URL)")
        parser.add_argument("--gpu", action="append", default=[], help="GPU UUID (repeat for each GPU)")
        parser.add_argument("--gpu-hour-price", help="USD per GPU-hour (default: by GPU model)")
        parser.add_argument("--kwh-price", help="USD per kWh, added on top (default: none)")

    def handle(self, *args, project: str, base_url: str | None, name: str | None, gpu: list[str], **options) -> None:
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            raise CommandError(f"no project with the slug {project!r}") from None
        if base_url is None:
            self._list(target)
            return
        if not gpu:
            raise CommandError("name the GPUs serving the endpoint with --gpu UUID (see the list without --base-url)")
        try:
            endpoint = endpoint_upsert(
                project=target,
                name=name or base_url,
                base_url=base_url,
                device_uuids=gpu,
                gpu_hour_price=_price(options["gpu_hour_price"]),
                electricity_kwh_price=_price(options["kwh_price"]),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Endpoint {endpoint} served by {len(gpu)} GPU(s).")
        self._prices(endpoint)

    def _list(self, project: Project) -> None:
        self.stdout.write("GPUs:")
        for device in GpuDevice.objects.filter(project=project).order_by("host", "index"):
            self.stdout.write(f"  {device.uuid}  {device.host} #{device.index}  {device.name}")
        self.stdout.write("Endpoints:")
        for endpoint in Endpoint.objects.filter(project=project).order_by("name"):
            self.stdout.write(f"  {endpoint}")
            self._prices(endpoint)

    def _prices(self, endpoint: Endpoint) -> None:
        devices = list(endpoint.devices.all())
        for device in devices:
            price = endpoint_gpu_prices(endpoint=endpoint, devices=devices)[device.pk]
            shown = f"${price}/GPU-hour" if price is not None else "unpriced (set --gpu-hour-price)"
            self.stdout.write(f"    {device.uuid} {device.name}: {shown}")
