"""Sample intervals: what a GPU measured between two consecutive readings.

NVML's utilization is the share of its last sample period a kernel ran, and its energy counter
only makes sense as a difference, so the unit of measurement is the interval between two
readings of one GPU, not a reading. Attribution, rollups and the charts all start here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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
