"""A stand-in for the `pynvml` module (nvidia-ml-py) on machines without an NVIDIA GPU.

It has the shape of the NVML API our sampler calls (same function names, arguments, return types,
error class and error codes) and is driven by a script of values per GPU, so tests exercise the
real sampler code. Install it with `monkeypatch.setitem(sys.modules, "pynvml", fake.module())`.

    fake = FakeNvml([FakeGpu(uuid="GPU-1", name="NVIDIA H100 80GB HBM3",
                             values={"utilization": [(80, 40), (90, 50)], "power_mw": [300_000]})])

Each getter returns the next value of its list and then repeats the last one. A value that is an
`NvmlFailure(code)` makes that call raise `NVMLError(code)`, as the real library does (for example
NVML_ERROR_NOT_SUPPORTED for the energy counter on GPUs older than Volta). A field that is not in
`values` raises NOT_SUPPORTED.
"""

from __future__ import annotations

import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The real library's constants (pynvml 13.x).
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
}


class NVMLError(Exception):
    """Like pynvml.NVMLError: the NVML return code is in `.value`."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML error {self.value}")


@dataclass(frozen=True)
class NvmlFailure:
    """A scripted value that makes the call raise NVMLError(code)."""

    code: int


UNSUPPORTED = NvmlFailure(NVML_ERROR_NOT_SUPPORTED)


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total: int = 80 * 1024**3
    mig: bool = False
    # utilization: (gpu %, memory %); memory_used: bytes; power_mw; energy_mj (counter);
    # temperature: C; sm_clock: MHz; processes: list of (pid, sm %, mem %) per call.
    values: dict[str, list[Any]] = field(default_factory=dict)


class _Memory:
    def __init__(self, total: int, used: int) -> None:
        self.total, self.used, self.free = total, used, total - used


class _Utilization:
    def __init__(self, gpu: int, memory: int) -> None:
        self.gpu, self.memory = gpu, memory


class _ProcessSample:
    """c_nvmlProcessUtilizationSample_t: pid, timeStamp, smUtil, memUtil, encUtil, decUtil."""

    def __init__(self, pid: int, sm: int, mem: int, time_stamp: int) -> None:
        self.pid, self.smUtil, self.memUtil, self.timeStamp = pid, sm, mem, time_stamp
        self.encUtil = self.decUtil = 0


class FakeNvml:
    def __init__(self, gpus: list[FakeGpu], *, init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.calls: Counter[str] = Counter()
        self._cursor: Counter[tuple[int, str]] = Counter()
        self.initialized = False

    # -- scripting ------------------------------------------------------------------------

    def _next(self, index: int, name: str) -> Any:
        script = self.gpus[index].values.get(name)
        if not script:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        position = self._cursor[(index, name)]
        self._cursor[(index, name)] += 1
        value = script[min(position, len(script) - 1)]
        if isinstance(value, NvmlFailure):
            raise NVMLError(value.code)
        return value

    def _handle(self, handle: Any) -> int:
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if not isinstance(handle, tuple) or handle[0] != "fake-nvml-handle":
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return handle[1]

    # -- the pynvml API -------------------------------------------------------------------

    def module(self) -> types.ModuleType:
        """A module object with pynvml's names, bound to this fake."""
        module = types.ModuleType("pynvml")
        module.__file__ = __file__
        for name, value in globals().items():
            if name.startswith("NVML_") or name == "NVMLError":
                setattr(module, name, value)
        for name in dir(self):
            if name.startswith("nvml"):
                setattr(module, name, getattr(self, name))
        return module

    def _count(self, name: str) -> None:
        self.calls[name] += 1

    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._count("nvmlSystemGetDriverVersion")
        return "570.00.fake"

    def nvmlDeviceGetCount(self) -> int:
        self._count("nvmlDeviceGetCount")
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, int]:
        self._count("nvmlDeviceGetHandleByIndex")
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return ("fake-nvml-handle", index)

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._count("nvmlDeviceGetUUID")
        return self.gpus[self._handle(handle)].uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._count("nvmlDeviceGetName")
        return self.gpus[self._handle(handle)].name

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        self._count("nvmlDeviceGetMigMode")
        gpu = self.gpus[self._handle(handle)]
        mode = NVML_DEVICE_MIG_ENABLE if gpu.mig else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> _Memory:
        self._count("nvmlDeviceGetMemoryInfo")
        index = self._handle(handle)
        return _Memory(self.gpus[index].memory_total, self._next(index, "memory_used"))

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> _Utilization:
        self._count("nvmlDeviceGetUtilizationRates")
        index = self._handle(handle)
        if self.gpus[index].mig:
            # What NVML does for a GPU in MIG mode: no device-level utilization.
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return _Utilization(*self._next(index, "utilization"))

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        self._count("nvmlDeviceGetPowerUsage")
        return self._next(self._handle(handle), "power_mw")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._count("nvmlDeviceGetTotalEnergyConsumption")
        return self._next(self._handle(handle), "energy_mj")

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        self._count("nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self._next(self._handle(handle), "temperature")

    def nvmlDeviceGetClockInfo(self, handle: Any, clock: int) -> int:
        self._count("nvmlDeviceGetClockInfo")
        if clock != NVML_CLOCK_SM:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self._next(self._handle(handle), "sm_clock")

    def nvmlDeviceGetProcessUtilization(self, handle: Any, timeStamp: int) -> list[_ProcessSample]:  # noqa: N803
        self._count("nvmlDeviceGetProcessUtilization")
        index = self._handle(handle)
        rows = self._next(index, "processes")
        if not rows:
            # The real call reports "no sample since timeStamp" as NOT_FOUND.
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return [_ProcessSample(pid, sm, mem, timeStamp + 1) for pid, sm, mem in rows]
