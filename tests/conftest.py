"""Shared fixtures. Named actors: alice owns project A, bob is a member of A, charlie has no access;
project B belongs to someone else."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection

from tracer.models import ApiKey, IngestBatch, Membership, Project
from tracer.projects import apikey_create, project_create

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "otlp"
# Trace captures: (stem, body file, Content-Encoding).
CORPUS_CAPTURES = [
    ("otel-openai-v2-multiagent-content", "otel-openai-v2-multiagent-content.pb", ""),
    ("otel-openai-v2-multiagent-nocontent", "otel-openai-v2-multiagent-nocontent.pb", ""),
    ("otel-openai-v2-legacy-multiagent-content", "otel-openai-v2-legacy-multiagent-content.pb", ""),
    ("openinference-openai-multiagent", "openinference-openai-multiagent.pb", ""),
    ("openinference-openai-multiagent-genai-semconv", "openinference-openai-multiagent-genai-semconv.pb.gz", "gzip"),
    ("traceloop-openai-multiagent-content", "traceloop-openai-multiagent-content.pb", ""),
    ("traceloop-openai-multiagent-nocontent", "traceloop-openai-multiagent-nocontent.pb", ""),
]


def corpus_bytes(name: str) -> bytes:
    path = CORPUS / name
    if not path.exists():
        pytest.fail(f"OTLP corpus file missing: {path} (the fixtures live in tests/fixtures/otlp/)")
    return path.read_bytes()


def corpus_protobuf(stem: str) -> bytes:
    """The capture's uncompressed protobuf body."""
    for capture, body, encoding in CORPUS_CAPTURES:
        if capture == stem:
            data = corpus_bytes(body)
            return gzip.decompress(data) if encoding == "gzip" else data
    raise KeyError(stem)


def gzip_bomb(size: int, *, chunk: int = 1024 * 1024) -> bytes:
    """`size` zero bytes, gzipped chunk by chunk so the test never holds the inflated body."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(chunk)
    parts = [deflater.compress(zeros) for _ in range(size // chunk)]
    parts.append(deflater.flush())
    return b"".join(parts)


def decode_status(body: bytes) -> tuple[int, str]:
    """Decode a google.rpc.Status by hand: field 1 varint `code`, field 2 string `message`."""

    def varint(pos: int) -> tuple[int, int]:
        value, shift = 0, 0
        while True:
            byte = body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, pos

    code, message, pos = 0, "", 0
    while pos < len(body):
        tag, pos = varint(pos)
        field, wire_type = tag >> 3, tag & 7
        if (field, wire_type) == (1, 0):
            code, pos = varint(pos)
        elif (field, wire_type) == (2, 2):
            length, pos = varint(pos)
            message = body[pos : pos + length].decode()
            pos += length
        else:
            raise AssertionError(f"unexpected field {field} wire type {wire_type} in a google.rpc.Status")
    return code, message


@pytest.fixture
def alice(db) -> User:
    return User.objects.create_user("alice", password="alice-password")


@pytest.fixture
def bob(db) -> User:
    return User.objects.create_user("bob", password="bob-password")


@pytest.fixture
def charlie(db) -> User:
    return User.objects.create_user("charlie", password="charlie-password")


@pytest.fixture
def project_a(alice, bob) -> Project:
    project = project_create(name="Project A", owner=alice)
    Membership.objects.create(project=project, user=bob, role=Membership.Role.MEMBER)
    return project


@pytest.fixture
def project_b(db) -> Project:
    return project_create(name="Project B")


@pytest.fixture
def key_a(project_a) -> tuple[ApiKey, str]:
    return apikey_create(project=project_a)


@pytest.fixture
def key_b(project_b) -> tuple[ApiKey, str]:
    return apikey_create(project=project_b)


# --- A live server and a real Celery worker process (integration tests) ----------------------


def _database_url() -> str:
    """The URL of the test database this process uses, for the worker process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(live_server, tmp_path) -> Iterator[subprocess.Popen]:
    env = {**os.environ, "DATABASE_URL": _database_url(), "OCTOTRACE_LOCAL_DEV": "1"}
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tracer",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--hostname",
            f"e2e-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    if proc.returncode not in (0, -15):
        print((tmp_path / "worker.log").read_text())


def wait_until_processed(project: Project, *, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unfinished = IngestBatch.objects.filter(project=project).exclude(status=IngestBatch.Status.DONE)
        if IngestBatch.objects.filter(project=project).exists() and not unfinished.exists():
            return
        time.sleep(0.25)
    states = list(IngestBatch.objects.filter(project=project).values_list("pk", "status", "error"))
    pytest.fail(f"batches not processed within {timeout}s: {states}")
