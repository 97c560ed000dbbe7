"""Progress of long management commands: a tqdm bar (rate, ETA) on a terminal, one summary line otherwise.

Commands that walk millions of rows (`replay`, `reprice`, `gpuattribute`, `export`) commit in bounded
steps, so Ctrl-C leaves consistent data; `Progress` says where they stopped so a rerun can resume.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    """Counts units of work (batches, spans, hours, rows) towards an optional total.

    On a terminal it draws a tqdm bar with rate and ETA; otherwise (CI, cron, a pipe) it stays quiet
    until the command prints its summary line, which `timing()` ends with the elapsed time and rate.
    """

    def __init__(self, *, stream: IO[str], unit: str, total: int | None = None, desc: str = "") -> None:
        self.unit = unit
        self.count = 0
        self.started = time.monotonic()
        self._bar = (
            tqdm(total=total, unit=f" {unit}", desc=desc or None, file=stream, dynamic_ncols=True, smoothing=0.1)
            if _is_terminal(stream)
            else None
        )

    def add(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """Yield each item, counting it once it was handled (when the next one is asked for)."""
        for item in items:
            yield item
            self.add()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def timing(self) -> str:
        """'in 12.3 s (4,567 spans/s)': the tail of a command's summary line."""
        elapsed = time.monotonic() - self.started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        return f"in {elapsed:.1f} s ({rate:,.0f} {self.unit}/s)"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: IO[str]) -> bool:
    # Django's OutputWrapper proxies isatty() to the real stream.
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
