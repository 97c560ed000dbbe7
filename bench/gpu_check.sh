#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU and PyTorch, run Octotrace's real NVML sampler
# (sdk/octotrace/nvml.py) while a PyTorch load runs, print the samples (non-zero utilization and
# power expected while the load runs), then the attribution of a few synthetic spans
# (tracer/gpu/intervals.py, the same code the server runs) and check its totals.
#
#   bash bench/gpu_check.sh            # about 20 s; GPU 0; needs python3, torch, nvidia-ml-py
#   GPU_CHECK_SECONDS=30 GPU_CHECK_INTERVAL=0.25 bash bench/gpu_check.sh
#
# Needs only the standard library besides torch and pynvml: both modules are loaded from their
# files, so neither the server's nor the SDK's dependencies have to be installed. Exit status 0
# when every check passed, 1 otherwise, 2 when the machine cannot run it (no GPU, torch or NVML).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Python that has PyTorch: this checkout's venv if it does, else python3.
PY=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=.venv/bin/python; fi
if ! "$PY" -c "import pynvml" 2>/dev/null; then
  echo "pynvml missing: installing nvidia-ml-py==13.615.71 (as pinned in requirements.txt)" >&2
  "$PY" -m pip install --quiet nvidia-ml-py==13.615.71 || { echo "cannot install nvidia-ml-py" >&2; exit 2; }
fi
nvidia-smi --query-gpu=index,name,driver_version,memory.total,power.limit --format=csv 2>/dev/null || true

exec "$PY" - <<'PYTHON'
import importlib.util
import os
import sys
import threading
import time

def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

def cannot(reason):
    print(f"cannot run the GPU check: {reason}", file=sys.stderr)
    sys.exit(2)

nvml = load("octotrace_nvml", "sdk/octotrace/nvml.py")
intervals = load("octotrace_intervals", "tracer/gpu/intervals.py")
try:
    import torch
except ImportError:
    cannot("no PyTorch on this machine")
if not torch.cuda.is_available():
    cannot("PyTorch sees no CUDA GPU")

SECONDS = float(os.environ.get("GPU_CHECK_SECONDS", "20"))
INTERVAL = float(os.environ.get("GPU_CHECK_INTERVAL", "0.5"))
reader = nvml.NvmlReader()
if not reader.open():
    cannot(f"no NVML: {reader.unavailable_reason}")
gpu0 = reader.gpus[0]
print(f"host {reader.host}; GPU 0: {gpu0.name} {gpu0.uuid} MIG={gpu0.mig_enabled} "
      f"memory {gpu0.memory_total_bytes / 2**30:.0f} GiB; {len(reader.gpus)} GPU(s)")

# The load: idle for the first quarter, bf16 matmuls for the middle half, idle for the last quarter.
load_start, load_end = SECONDS * 0.25, SECONDS * 0.75
stop = threading.Event()
def work():
    device = torch.device("cuda:0")
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    torch.cuda.synchronize()
    began = time.monotonic()
    while time.monotonic() - began < load_start and not stop.is_set():
        time.sleep(0.05)
    while time.monotonic() - began < load_end and not stop.is_set():
        for _ in range(20):
            a = (a @ b).clamp_(-1, 1)
        torch.cuda.synchronize()
worker = threading.Thread(target=work, daemon=True)

readings = []
t0 = time.time_ns()
worker.start()
next_read = time.monotonic()
while time.monotonic() - next_read < SECONDS + 1e-9 and len(readings) * INTERVAL <= SECONDS:
    readings.append(reader.read()[0])
    next_read += INTERVAL
    time.sleep(max(0.0, next_read - time.monotonic()))
stop.set()
worker.join(timeout=30)
reader.close()

print(f"\n{'t (s)':>6} {'util %':>6} {'mem %':>5} {'mem GiB':>8} {'power W':>8} {'energy J':>12} {'temp C':>6} {'SM MHz':>6}  processes")
def fmt(value, scale=1.0, digits=0):
    return "-" if value is None else f"{value / scale:.{digits}f}"
for r in readings:
    print(f"{(r.time_unix_nano - t0) / 1e9:6.2f} {fmt(r.utilization_gpu):>6} {fmt(r.utilization_memory):>5} "
          f"{fmt(r.memory_used_bytes, 2**30, 1):>8} {fmt(r.power_mw, 1000, 1):>8} {fmt(r.energy_mj, 1000, 1):>12} "
          f"{fmt(r.temperature_c):>6} {fmt(r.sm_clock_mhz):>6}  {r.processes}")

ok = True
def check(condition, label):
    global ok
    ok &= bool(condition)
    print(f"{'PASS' if condition else 'FAIL'}: {label}")

print()
busy = [r for r in readings if load_start + 1 <= (r.time_unix_nano - t0) / 1e9 <= load_end - 0.5]
check(any((r.utilization_gpu or 0) > 0 for r in busy), "non-zero utilization while the load runs")
check(any((r.power_mw or 0) > 0 for r in readings), "non-zero power draw")
peak = max((r.power_mw or 0) for r in busy) if busy else 0
idle = min((r.power_mw or 0) for r in readings[: max(1, int(load_start / INTERVAL) - 1)])
check(peak > idle, f"power under load ({peak / 1000:.0f} W) above idle ({idle / 1000:.0f} W)")
if readings[0].energy_mj is None:
    print("note: this GPU has no energy counter; energy comes from mean power x time")

# Attribution of synthetic spans: A and B overlap during the load, C runs while idle, D is outside
# every sample interval (after the sampling ended).
samples = [(r.time_unix_nano, r.utilization_gpu, r.power_mw, r.energy_mj) for r in readings]
ivs = intervals.intervals_from_samples(device_id=0, samples=samples, max_gap_ns=int(30e9))
S = 1_000_000_000
spans = {
    "A (load, first half)": (t0 + int(load_start * S), t0 + int((load_start + load_end) / 2 * S)),
    "B (load, overlaps A)": (t0 + int((load_start + 1) * S), t0 + int(load_end * S)),
    "C (idle)": (t0 + int(0.5 * S), t0 + int((load_start - 0.5) * S)),
    "D (after sampling)": (t0 + int((SECONDS + 60) * S), t0 + int((SECONDS + 61) * S)),
}
totals = intervals.WindowTotals()
shares = intervals.split_intervals(requests=[(k, s, e) for k, (s, e) in spans.items()], intervals=ivs, totals=totals)
print(f"\n{'span':<24} {'wall s':>7} {'GPU-s':>7} {'Wh':>9} {'$ at 2.50/h':>12}")
for key, (start, end) in spans.items():
    share = shares.get(key)
    if share is None:
        print(f"{key:<24} {(end - start) / S:7.2f} {'none':>7} {'none':>9} {'none':>12}")
        continue
    print(f"{key:<24} {(end - start) / S:7.2f} {share.seconds:7.3f} {share.energy_j / 3600:9.5f} {share.seconds * 2.5 / 3600:12.7f}")
print(f"\nmeasured: {totals.measured_seconds:.3f} GPU-s, {totals.measured_energy_j:.1f} J; "
      f"attributed {totals.attributed_seconds:.3f} s / {totals.attributed_energy_j:.1f} J; "
      f"idle {totals.idle_seconds:.3f} s / {totals.idle_energy_j:.1f} J")
check("D (after sampling)" not in shares, "a span outside every sample interval gets nothing")
check(abs(totals.attributed_seconds + totals.idle_seconds - totals.measured_seconds) < 1e-6, "seconds: attributed + idle = measured")
check(abs(totals.attributed_energy_j + totals.idle_energy_j - totals.measured_energy_j) < 1e-6, "energy: attributed + idle = measured")
a, c = shares.get("A (load, first half)"), shares.get("C (idle)")
if a and c:
    check(a.energy_j / a.seconds > c.energy_j / c.seconds, "a GPU-second under load costs more energy than an idle one")
sys.exit(0 if ok else 1)
PYTHON
