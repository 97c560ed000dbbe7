"""Sample intervals: what a GPU measured between two consecutive readings.

NVML's utilization is the share of its last sample period a kernel ran, and its energy counter
only makes sense as a difference, so the unit of measurement is the interval between two
readings of one GPU, not a reading. Attribution, rollups and the charts all start here.

Standard library only (no Django), so bench/gpu_check.sh can run the attribution model on a GPU
machine without the server's dependencies.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Interval:
    device_id: int
    start_ns: int
    end_ns: int
    # Joules over the interval: energy counter delta, else mean power x time; None without either.
    energy_j: float | None
    utilization_gpu: float | None
    # Measured seconds per wall-clock second: 1 for raw samples; less for a minute rollup with gaps.
    coverage: float = 1.0

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / NS * self.coverage


def interval_energy_j(
    *,
    start_energy_mj: int | None,
    end_energy_mj: int | None,
    start_power_mw: int | None,
    end_power_mw: int | None,
    seconds: float,
) -> float | None:
    """Prefer the energy counter (exact); fall back on the trapezoid of the two power readings.
    A counter that went backwards (driver reload) is not trusted."""
    if start_energy_mj is not None and end_energy_mj is not None and end_energy_mj >= start_energy_mj:
        return (end_energy_mj - start_energy_mj) / 1000
    powers = [p for p in (start_power_mw, end_power_mw) if p is not None]
    if powers:
        return sum(powers) / len(powers) / 1000 * seconds
    return None


def intervals_from_samples(
    *, device_id: int, samples: Iterable[tuple[int, int | None, int | None, int | None]], max_gap_ns: int
) -> list[Interval]:
    """Samples as (time_ns, utilization_gpu, power_mw, energy_mj), in time order. Consecutive pairs
    further apart than max_gap_ns bound no interval (the sampler was not running)."""
    out: list[Interval] = []
    previous: tuple[int, int | None, int | None, int | None] | None = None
    for sample in samples:
        if previous is not None:
            start, end = previous[0], sample[0]
            if 0 < end - start <= max_gap_ns:
                out.append(
                    Interval(
                        device_id=device_id,
                        start_ns=start,
                        end_ns=end,
                        energy_j=interval_energy_j(
                            start_energy_mj=previous[3],
                            end_energy_mj=sample[3],
                            start_power_mw=previous[2],
                            end_power_mw=sample[2],
                            seconds=(end - start) / NS,
                        ),
                        # The reading at the end describes the period that ends there.
                        utilization_gpu=sample[1],
                    )
                )
        previous = sample
    return out


@dataclass(slots=True)
class Share:
    """What one request got: seconds per device and joules in total."""

    seconds_by_device: dict[int, float] = field(default_factory=dict)
    energy_j: float = 0.0
    energy_known: bool = True

    @property
    def seconds(self) -> float:
        return sum(self.seconds_by_device.values())


@dataclass(slots=True)
class WindowTotals:
    measured_seconds: float = 0.0
    measured_energy_j: float = 0.0
    attributed_seconds: float = 0.0
    attributed_energy_j: float = 0.0
    idle_seconds: float = 0.0
    idle_energy_j: float = 0.0


def split_intervals(
    *, requests: Iterable[tuple[Hashable, int, int]], intervals: Iterable[Interval], totals: WindowTotals | None = None
) -> dict[Hashable, Share]:
    """Split each interval among the requests in flight, as (key, start_ns, end_ns).

    Pure function: the whole attribution model is here. Requests with no overlap get no entry.
    `totals`, when given, accumulates what was measured, attributed and idle.
    """
    spans = sorted((start, end, key) for key, start, end in requests if end > start)
    shares: dict[Hashable, Share] = {}
    # One pass in start order: `active` holds the requests that started before the current
    # interval ends and have not ended before it starts.
    active: list[tuple[int, int, Hashable]] = []
    next_span = 0
    for interval in sorted(intervals, key=lambda i: i.start_ns):
        length = interval.end_ns - interval.start_ns
        if length <= 0:
            continue
        while next_span < len(spans) and spans[next_span][0] < interval.end_ns:
            active.append(spans[next_span])
            next_span += 1
        active = [s for s in active if s[1] > interval.start_ns]
        overlapping = active
        cuts = {interval.start_ns, interval.end_ns}
        for start, end, _ in overlapping:
            if interval.start_ns < start < interval.end_ns:
                cuts.add(start)
            if interval.start_ns < end < interval.end_ns:
                cuts.add(end)
        points = sorted(cuts)
        energy = interval.energy_j
        if totals is not None:
            totals.measured_seconds += interval.seconds
            totals.measured_energy_j += energy or 0.0
        for a, b in zip(points, points[1:], strict=False):
            in_flight = [key for start, end, key in overlapping if start <= a and end >= b]
            fraction = (b - a) / length
            seconds = interval.seconds * fraction
            joules = energy * fraction if energy is not None else None
            if not in_flight:
                if totals is not None:
                    totals.idle_seconds += seconds
                    totals.idle_energy_j += joules or 0.0
                continue
            if totals is not None:
                totals.attributed_seconds += seconds
                totals.attributed_energy_j += joules or 0.0
            each_seconds = seconds / len(in_flight)
            for key in in_flight:
                share = shares.setdefault(key, Share())
                share.seconds_by_device[interval.device_id] = (
                    share.seconds_by_device.get(interval.device_id, 0.0) + each_seconds
                )
                if joules is None:
                    share.energy_known = False
                else:
                    share.energy_j += joules / len(in_flight)
    return shares
