"""Reading NVIDIA GPUs through NVML (`pip install octotrace[gpu]`, module `pynvml`).

One reader for both ways GPU telemetry reaches the server: the `octotrace gpu-agent` command
(octotrace/gpu_agent.py) and the server's own Celery sampler on GPU hosts (tracer/gpu/sampling.py).

Where NVML or a GPU is absent, `NvmlReader.open()` says so once (one log line) and returns False;
the caller then does nothing else. Each field is read on its own: a query the GPU does not support
(the energy counter before Volta, device utilization while MIG is enabled, per-process utilization
without permission) leaves that field None for that GPU and is not asked again, while the other
fields keep coming.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("octotrace.gpu")

# The fields of a reading, in the order they are read.
FIELDS = (
    "utilization_gpu",
    "utilization_memory",
    "memory_used_bytes",
    "power_mw",
    "energy_mj",
    "temperature_c",
    "sm_clock_mhz",
    "processes",
)


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    uuid: str
    name: str
    memory_total_bytes: int | None
    mig_enabled: bool


@dataclass(slots=True)
class GpuReading:
    """One sample of one GPU. None means "not available on this GPU", never zero."""

    gpu: GpuInfo
    time_unix_nano: int
    utilization_gpu: int | None = None  # % of the sample period a kernel ran
    utilization_memory: int | None = None  # % of the period device memory was read or written
    memory_used_bytes: int | None = None
    power_mw: int | None = None
    energy_mj: int | None = None  # counter since the driver loaded
    temperature_c: int | None = None
    sm_clock_mhz: int | None = None
    processes: list[dict[str, int]] | None = None  # [{"pid", "sm", "mem"}], where NVML gives them


@dataclass
class _Device:
    info: GpuInfo
    handle: Any
    unsupported: set[str] = field(default_factory=set)
    warned: set[str] = field(default_factory=set)
    # Per-process utilization is reported since a timestamp (microseconds) we pass back.
    last_process_timestamp: int = 0


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlReader:
    """Samples every GPU NVML sees. Not thread-safe; one per sampling loop."""

    def __init__(self, *, host: str | None = None, nvml: Any = None) -> None:
        self.host = host or socket.gethostname()
        self._nvml = nvml
        self._devices: list[_Device] = []
        self._opened = False
        self.unavailable_reason: str | None = None

    @property
    def gpus(self) -> list[GpuInfo]:
        return [d.info for d in self._devices]

    def open(self) -> bool:
        """Load NVML and list the GPUs. False (logged once) when there is no NVML or no GPU."""
        if self._opened:
            return bool(self._devices)
        if self.unavailable_reason is not None:
            return False
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
        except ImportError:
            return self._unavailable("the nvidia-ml-py package is not installed (pip install 'octotrace[gpu]')")
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return self._unavailable(f"NVML could not start ({exc}): no NVIDIA driver on this host")
        try:
            count = nvml.nvmlDeviceGetCount()
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                self._devices.append(_Device(info=self._info(index, handle), handle=handle))
        except nvml.NVMLError as exc:
            self._shutdown()
            self._devices = []
            return self._unavailable(f"NVML could not list the GPUs ({exc})")
        if not self._devices:
            self._shutdown()
            return self._unavailable("NVML sees no GPU on this host")
        self._opened = True
        names = ", ".join(
            f"{d.info.index}: {d.info.name}{' (MIG)' if d.info.mig_enabled else ''}" for d in self._devices
        )
        log.info("octotrace: sampling %d GPU(s) on %s: %s", len(self._devices), self.host, names)
        return True

    def close(self) -> None:
        if self._opened:
            self._shutdown()
            self._opened = False

    def read(self) -> list[GpuReading]:
        """One reading per GPU, now. Empty when `open()` failed."""
        if not self._opened:
            return []
        now = time.time_ns()
        return [self._read(device, now) for device in self._devices]

    # -- internals ------------------------------------------------------------------------

    def _unavailable(self, reason: str) -> bool:
        self.unavailable_reason = reason
        log.warning("octotrace: no GPU telemetry: %s", reason)
        return False

    def _shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            log.debug("nvmlShutdown failed", exc_info=True)

    def _info(self, index: int, handle: Any) -> GpuInfo:
        nvml = self._nvml
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        name = _text(nvml.nvmlDeviceGetName(handle))
        try:
            memory_total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        except nvml.NVMLError:
            memory_total = None
        try:
            mig = nvml.nvmlDeviceGetMigMode(handle)[0] == nvml.NVML_DEVICE_MIG_ENABLE
        except nvml.NVMLError:
            mig = False  # GPUs without MIG answer NOT_SUPPORTED
        return GpuInfo(index=index, uuid=uuid, name=name, memory_total_bytes=memory_total, mig_enabled=mig)

    def _field(self, device: _Device, name: str, query: Callable[[], Any]) -> Any:
        if name in device.unsupported:
            return None
        try:
            return query()
        except self._nvml.NVMLError as exc:
            self._failed(device, name, exc)
            return None

    def _failed(self, device: _Device, name: str, exc: Exception) -> None:
        nvml = self._nvml
        if getattr(exc, "value", None) in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_NO_PERMISSION):
            # Permanent for this GPU: stop asking (MIG mode, old architecture, no permission).
            device.unsupported.add(name)
            log.info("octotrace: GPU %s does not give %s (%s); skipping it", device.info.index, name, exc)
        elif name not in device.warned:
            # Transient (GPU busy, lost, timeout): this reading lacks the field; warn once per field.
            device.warned.add(name)
            log.warning("octotrace: GPU %s: reading %s failed (%s)", device.info.index, name, exc)

    def _read(self, device: _Device, now: int) -> GpuReading:
        nvml, handle = self._nvml, device.handle
        reading = GpuReading(gpu=device.info, time_unix_nano=now)
        utilization = self._field(device, "utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        if utilization is not None:
            reading.utilization_gpu = int(utilization.gpu)
            reading.utilization_memory = int(utilization.memory)
        memory = self._field(device, "memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        if memory is not None:
            reading.memory_used_bytes = int(memory.used)
        reading.power_mw = self._int(self._field(device, "power", lambda: nvml.nvmlDeviceGetPowerUsage(handle)))
        reading.energy_mj = self._int(
            self._field(device, "energy", lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        )
        reading.temperature_c = self._int(
            self._field(device, "temperature", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        )
        reading.sm_clock_mhz = self._int(
            self._field(device, "sm_clock", lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
        )
        reading.processes = self._processes(device)
        return reading

    @staticmethod
    def _int(value: Any) -> int | None:
        return None if value is None else int(value)

    def _processes(self, device: _Device) -> list[dict[str, int]] | None:
        if "processes" in device.unsupported:
            return None
        nvml = self._nvml
        try:
            samples = nvml.nvmlDeviceGetProcessUtilization(device.handle, device.last_process_timestamp)
        except nvml.NVMLError as exc:
            if exc.value == nvml.NVML_ERROR_NOT_FOUND:
                return []  # no process ran a kernel since the last reading
            self._failed(device, "processes", exc)
            return None
        latest: dict[int, dict[str, int]] = {}
        for sample in samples:
            device.last_process_timestamp = max(device.last_process_timestamp, int(sample.timeStamp))
            latest[int(sample.pid)] = {"pid": int(sample.pid), "sm": int(sample.smUtil), "mem": int(sample.memUtil)}
        return sorted(latest.values(), key=lambda p: p["pid"])
