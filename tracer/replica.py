"""Dashboard and read-API reads from a PostgreSQL read replica (DATABASE_REPLICA_URL).

A replica lags its primary, so it serves only what may be a little stale:

- only reads made while a safe (GET/HEAD) request is being answered, by `ReplicaReadsMiddleware`;
  the worker, beat, the receiver's POSTs and every command read the primary;
- never a read inside a transaction on the primary: a service that reads in order to write (read,
  decide, write, in `transaction.atomic()`) sees the primary, so stale rows never feed a write;
- never the models that decide who may see what (projects, memberships, API keys, users, sessions,
  lockouts): a revoked key or a removed member must lose access at once, not after the lag;
- never for a browser that has just written: after a POST (or PUT, PATCH, DELETE) the response sets
  a short cookie that sends that browser's reads to the primary for REPLICA_STICKY_SECONDS, so a
  budget created and the list it redirects to agree (read your own writes).

Writes always go to the primary. Migrations run on the primary only; the replica gets the schema by
replication (docs/deploy.md "Read replica").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse

REPLICA = "replica"
STICKY_COOKIE = "octotrace_primary_until"

# Apps and models whose reads decide access or logins: always from the primary.
PRIMARY_ONLY_APPS = frozenset({"auth", "sessions", "contenttypes", "admin", "axes", "mozilla_django_oidc"})
PRIMARY_ONLY_MODELS = frozenset({("tracer", "project"), ("tracer", "membership"), ("tracer", "apikey")})

_replica_reads: ContextVar[bool] = ContextVar("octotrace_replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


@contextmanager
def replica_reads() -> Iterator[None]:
    """Let reads in this block go to the replica (where the router allows it)."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


class ReplicaRouter:
    """DATABASE_ROUTERS entry: reads to the replica under the rules of this module, writes to the primary."""

    def db_for_read(self, model: type, **hints: object) -> str | None:
        if not (_replica_reads.get() and replica_configured()):
            return None
        meta = model._meta  # type: ignore[attr-defined]
        if meta.app_label in PRIMARY_ONLY_APPS or (meta.app_label, meta.model_name) in PRIMARY_ONLY_MODELS:
            return None
        if connections["default"].in_atomic_block:
            return None  # reading to write: the primary's rows, never the replica's
        return REPLICA

    def db_for_write(self, model: type, **hints: object) -> str:
        return "default"

    def allow_relation(self, obj1: object, obj2: object, **hints: object) -> bool:
        return True  # one data set, two copies of it

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool:
        return db != REPLICA


class ReplicaReadsMiddleware:
    """Answer safe requests with replica reads, except for a browser that has just written."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not replica_configured():
            return self.get_response(request)
        if request.method in ("GET", "HEAD") and not _sticky(request):
            with replica_reads():
                return self.get_response(request)
        response = self.get_response(request)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            until = int(time.time()) + settings.REPLICA_STICKY_SECONDS
            response.set_cookie(
                STICKY_COOKIE,
                str(until),
                max_age=settings.REPLICA_STICKY_SECONDS,
                httponly=True,
                secure=settings.SESSION_COOKIE_SECURE,
                samesite="Lax",
            )
        return response


def _sticky(request: HttpRequest) -> bool:
    # The cookie only ever sends reads to the primary, so a forged one costs the forger nothing.
    try:
        return int(request.COOKIES.get(STICKY_COOKIE, "0")) > time.time()
    except ValueError:
        return False
