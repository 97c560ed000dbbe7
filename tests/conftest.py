"""Shared fixtures. Named actors: alice owns project A, bob is a member of A, charlie has no access;
project B belongs to someone else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from tests.factories import (
    BOTH_SCOPES,
    ROOT,
    S,
    broker_queues_purge,
    gpu_data_create,
    project_with_members,
    user_create,
)
from tracer import ratelimit
from tracer.models import ApiKey, Project
from tracer.projects import apikey_create
from tracer.ratelimit import LocalLimiter, RedisLimiter


@pytest.fixture
def alice(db) -> User:
    return user_create("alice")


@pytest.fixture
def bob(db) -> User:
    return user_create("bob")


@pytest.fixture
def charlie(db) -> User:
    return user_create("charlie")


@pytest.fixture
def project_a(alice, bob) -> Project:
    return project_with_members("Project A", owner=alice, members=(bob,))


@pytest.fixture
def project_b(db) -> Project:
    return project_with_members("Project B")


@pytest.fixture(autouse=True)
def rate_limit_buckets_fresh() -> Iterator[None]:
    """Every test starts with full rate-limit buckets: their names hold key and project ids, which a
    later test (SQLite reuses ids) or a later run (the same Redis database) may have again."""
    url = settings.OCTOTRACE_RATE_LIMIT_REDIS_URL
    ratelimit.limiter_install(RedisLimiter(url, prefix=f"test:{uuid.uuid4().hex}:") if url else LocalLimiter())
    yield
    ratelimit.limiter_install(None)


# key_a and key_b hold both scopes (like a key from before scopes), so that a test can send spans and
# read them back with one key; tests/test_security_matrix.py checks each scope on its own.
@pytest.fixture
def key_a(project_a) -> tuple[ApiKey, str]:
    return apikey_create(project=project_a, scopes=BOTH_SCOPES)


@pytest.fixture
def key_b(project_b) -> tuple[ApiKey, str]:
    return apikey_create(project=project_b, scopes=BOTH_SCOPES)


# --- A live server and a real Celery worker process (integration tests) ----------------------


def _database_url() -> str:
    """The URL of the test database this process uses, for the worker process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker_factory(live_server, tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start real Celery worker processes on the test database and broker; each consumes every queue,
    or only `queues` (as `celery worker -Q`). Its log is `tmp_path / f"{name}.log"`. All are stopped
    at the end of the test."""
    broker_queues_purge()
    env = {**os.environ, "DATABASE_URL": _database_url(), "OCTOTRACE_LOCAL_DEV": "1"}
    started: list[tuple[subprocess.Popen, Path, IO[bytes]]] = []

    def start(name: str = "worker", *, queues: str | None = None, concurrency: int = 2) -> subprocess.Popen:
        path = tmp_path / f"{name}.log"
        log = path.open("wb")
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tracer",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{name}-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        if queues:
            command += ["-Q", queues]
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, path, log))
        return proc

    yield start
    for proc, path, log in started:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if proc.returncode not in (0, -15):
            print(path.read_text())


@pytest.fixture
def worker(worker_factory) -> subprocess.Popen:
    return worker_factory()


@pytest.fixture
def gpu_data(project_a, project_b) -> str:
    """An H100 of project A sampled for 10 s with one LLM call on it (tests/factories.py); the trace id."""
    return gpu_data_create(project_a, project_b, t0=(time.time_ns() - 3600 * S) // S * S)
