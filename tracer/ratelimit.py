"""Rate limits: token buckets per API key and per project (docs/security.md "Keys and rate limits").

Ingest is limited in requests/s and spans/s, the read API in requests/min. Each figure is a bucket
that holds up to one second's worth of tokens (one minute's for the read API) and refills at the
figure's rate; a request takes its tokens from every bucket that applies (its key's and its
project's), or from none, and is refused with the time until it would fit.

Spans are counted from the request the receiver decoded, so they are charged after the batch is
stored: a request is admitted while its spans buckets are not in debt, then its span count is
taken, which may leave them in debt; the next request waits until the debt is paid back. Over
time the rate holds exactly, a refused request stores nothing, and the body is decoded once.

Buckets live in Redis when OCTOTRACE_RATE_LIMIT_REDIS_URL is set (the production stack: every web
process shares them; one Lua script per check makes it atomic), else in this process (the embedded
defaults). If Redis cannot be reached, requests are let through: a limiter outage must not stop ingest.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from django.conf import settings

from tracer.models import ApiKey, Project

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of one check: admitted when it holds `need` tokens; then `cost` is taken."""

    name: str
    rate: float  # tokens per second
    capacity: float
    need: float
    cost: float
    # What the user is told when this bucket refuses.
    reason: str


@dataclass(frozen=True, slots=True)
class Refusal:
    retry_after: int  # whole seconds, at least 1 (the Retry-After header)
    reason: str


class Limiter(Protocol):
    def take(self, buckets: Sequence[Bucket], *, force: bool = False) -> tuple[float, int]:
        """Take every bucket's cost if every bucket holds its need (or `force`), else nothing.

        Returns (0, -1) when taken, else (seconds until the request would fit, index of the bucket
        that needs the longest wait).
        """
        ...


class LocalLimiter:
    """Buckets in this process's memory: the embedded defaults (one web process)."""

    # Past this many buckets, full ones (equivalent to absent) are dropped.
    PRUNE_ABOVE = 10_000

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float, float]] = {}  # name -> (tokens, at, full again at)

    def take(self, buckets: Sequence[Bucket], *, force: bool = False) -> tuple[float, int]:
        with self._lock:
            now = self.clock()
            levels = [self._level(bucket, now) for bucket in buckets]
            wait, worst = _shortfall(buckets, levels)
            if wait > 0 and not force:
                return wait, worst
            for bucket, level in zip(buckets, levels, strict=True):
                left = level - bucket.cost
                self._buckets[bucket.name] = (left, now, now + (bucket.capacity - left) / bucket.rate)
            if len(self._buckets) > self.PRUNE_ABOVE:
                self._prune(now)
            return 0.0, -1

    def _level(self, bucket: Bucket, now: float) -> float:
        tokens, at, _ = self._buckets.get(bucket.name, (bucket.capacity, now, now))
        return min(bucket.capacity, tokens + max(0.0, now - at) * bucket.rate)

    def _prune(self, now: float) -> None:
        # A full bucket is the same as no bucket.
        self._buckets = {name: state for name, state in self._buckets.items() if state[2] > now}


# KEYS: the buckets. ARGV: now, force (0/1), then rate, capacity, need, cost for each bucket.
# Returns {1, "0", 0} when taken, else {0, seconds to wait (a string: Lua numbers become integers
# on the way out), the 1-based index of the bucket that needs the longest wait}.
_TAKE_LUA = """
local now = tonumber(ARGV[1])
local force = ARGV[2] == "1"
local levels = {}
local wait, worst = 0, 0
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local rate, capacity, need = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local state = redis.call("HMGET", KEYS[i], "tokens", "at")
  local tokens, at = tonumber(state[1]), tonumber(state[2])
  local level = capacity
  if tokens ~= nil and at ~= nil then
    level = math.min(capacity, tokens + math.max(0, now - at) * rate)
  end
  levels[i] = level
  if level < need and (need - level) / rate > wait then
    wait, worst = (need - level) / rate, i
  end
end
if wait > 0 and not force then
  return {0, tostring(wait), worst}
end
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local rate, capacity, cost = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 4])
  local left = levels[i] - cost
  redis.call("HSET", KEYS[i], "tokens", tostring(left), "at", tostring(now))
  -- Once full again the bucket is the same as no bucket: let Redis drop it then.
  redis.call("PEXPIRE", KEYS[i], math.ceil((capacity - left) / rate * 1000) + 1000)
end
return {1, "0", 0}
"""


class RedisLimiter:
    """Buckets in Redis, shared by every web process; each check is one atomic Lua script.

    The clock is the web host's wall clock (hosts should run NTP); a bucket last touched by a host
    whose clock is ahead simply refills a little later."""

    def __init__(self, url: str, *, clock: Clock = time.time, prefix: str = "octotrace:ratelimit:") -> None:
        self.clock = clock
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self.client.register_script(_TAKE_LUA)

    def take(self, buckets: Sequence[Bucket], *, force: bool = False) -> tuple[float, int]:
        args: list[float | str] = [repr(self.clock()), "1" if force else "0"]
        for bucket in buckets:
            args += [repr(float(bucket.rate)), repr(float(bucket.capacity)), repr(bucket.need), repr(bucket.cost)]
        try:
            taken, wait, worst = self._script(keys=[self.prefix + b.name for b in buckets], args=args)
        except redis.RedisError:
            log.warning("rate limiter: Redis unavailable, letting the request through", exc_info=True)
            return 0.0, -1
        return (0.0, -1) if taken else (float(wait), int(worst) - 1)


def _shortfall(buckets: Sequence[Bucket], levels: Sequence[float]) -> tuple[float, int]:
    wait, worst = 0.0, -1
    for index, (bucket, level) in enumerate(zip(buckets, levels, strict=True)):
        if level < bucket.need and (bucket.need - level) / bucket.rate > wait:
            wait, worst = (bucket.need - level) / bucket.rate, index
    return wait, worst


_limiter: Limiter | None = None
_limiter_lock = threading.Lock()


def limiter() -> Limiter:
    """The limiter this process uses: Redis when OCTOTRACE_RATE_LIMIT_REDIS_URL is set, else local."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            url = settings.OCTOTRACE_RATE_LIMIT_REDIS_URL
            _limiter = RedisLimiter(url) if url else LocalLimiter()
        return _limiter


def limiter_install(new: Limiter | None) -> None:
    """Use `new` from now on (tests: a limiter with an injected clock); None: back to the settings'."""
    global _limiter
    with _limiter_lock:
        _limiter = new


# --- The limits ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """One project's figures (0: no limit): for the project as a whole, and for each of its keys."""

    ingest_rps: int
    ingest_spans_per_s: int
    read_per_min: int
    key_ingest_rps: int
    key_ingest_spans_per_s: int
    key_read_per_min: int


def limits_for(project: Project) -> Limits:
    """The project's overrides, else the server's settings."""

    def figure(field: str, setting: str) -> int:
        override = getattr(project, field)
        return override if override is not None else getattr(settings, setting)

    return Limits(
        ingest_rps=figure("rate_ingest_rps", "OCTOTRACE_RATE_INGEST_RPS"),
        ingest_spans_per_s=figure("rate_ingest_spans_per_s", "OCTOTRACE_RATE_INGEST_SPANS_PER_S"),
        read_per_min=figure("rate_read_per_min", "OCTOTRACE_RATE_READ_PER_MIN"),
        key_ingest_rps=figure("rate_key_ingest_rps", "OCTOTRACE_RATE_KEY_INGEST_RPS"),
        key_ingest_spans_per_s=figure("rate_key_ingest_spans_per_s", "OCTOTRACE_RATE_KEY_INGEST_SPANS_PER_S"),
        key_read_per_min=figure("rate_key_read_per_min", "OCTOTRACE_RATE_KEY_READ_PER_MIN"),
    )


def _per_second(name: str, figure: int, *, need: float, cost: float, reason: str) -> list[Bucket]:
    if not figure:
        return []
    return [Bucket(name=name, rate=figure, capacity=figure, need=need, cost=cost, reason=reason)]


def _per_minute(name: str, figure: int, *, reason: str) -> list[Bucket]:
    if not figure:
        return []
    return [Bucket(name=name, rate=figure / 60, capacity=figure, need=1, cost=1, reason=reason)]


def _spans_buckets(key: ApiKey, limits: Limits, *, need: float, cost: float) -> list[Bucket]:
    return [
        *_per_second(
            f"key:{key.pk}:spans",
            limits.key_ingest_spans_per_s,
            need=need,
            cost=cost,
            reason=f"this key's limit of {limits.key_ingest_spans_per_s} spans/s",
        ),
        *_per_second(
            f"project:{key.project_id}:spans",
            limits.ingest_spans_per_s,
            need=need,
            cost=cost,
            reason=f"this project's limit of {limits.ingest_spans_per_s} spans/s",
        ),
    ]


def _refusal(buckets: Sequence[Bucket], wait: float, worst: int) -> Refusal | None:
    if wait <= 0:
        return None
    return Refusal(retry_after=max(1, math.ceil(wait)), reason=f"rate limited: over {buckets[worst].reason}")


# --- Services -----------------------------------------------------------------------------


def ingest_admit(*, key: ApiKey) -> Refusal | None:
    """Take one ingest request from the key's and the project's buckets, if their spans buckets are
    not in debt; a Refusal (429) otherwise. The spans come later: `ingest_spans_charge`."""
    limits = limits_for(key.project)
    buckets = [
        *_per_second(
            f"key:{key.pk}:ingest",
            limits.key_ingest_rps,
            need=1,
            cost=1,
            reason=f"this key's limit of {limits.key_ingest_rps} ingest requests/s",
        ),
        *_per_second(
            f"project:{key.project_id}:ingest",
            limits.ingest_rps,
            need=1,
            cost=1,
            reason=f"this project's limit of {limits.ingest_rps} ingest requests/s",
        ),
        *_spans_buckets(key, limits, need=1, cost=0),
    ]
    if not buckets:
        return None
    return _refusal(buckets, *limiter().take(buckets))


def ingest_spans_charge(*, key: ApiKey, spans: int) -> None:
    """Take a stored request's spans from the key's and the project's spans buckets (into debt if
    need be: the next request then waits until it is paid back)."""
    buckets = _spans_buckets(key, limits_for(key.project), need=0, cost=spans)
    if buckets and spans > 0:
        limiter().take(buckets, force=True)


def read_admit(*, project: Project, key: ApiKey | None = None, user_id: int | None = None) -> Refusal | None:
    """Take one read API request from the project's bucket and the caller's (its key, or the
    logged-in user, limited like a key); a Refusal (429) otherwise."""
    limits = limits_for(project)
    caller = f"key:{key.pk}" if key is not None else f"user:{user_id}"
    who = "this key's" if key is not None else "your"
    buckets = [
        *_per_minute(
            f"{caller}:read",
            limits.key_read_per_min,
            reason=f"{who} limit of {limits.key_read_per_min} read requests/min",
        ),
        *_per_minute(
            f"project:{project.pk}:read",
            limits.read_per_min,
            reason=f"this project's limit of {limits.read_per_min} read requests/min",
        ),
    ]
    if not buckets:
        return None
    return _refusal(buckets, *limiter().take(buckets))
