"""Reads from a read replica (tracer/replica.py), with a second PostgreSQL database standing in for the
replica: a copy of the primary taken at one moment, so it lacks what the primary received after it,
as a lagging replica does. A fresh process is configured with DATABASE_REPLICA_URL (the settings, the
router and the middleware as in production) and reports which copy each read saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection, connections

from tests.factories import chat, ingest_spans, otlp_span, sid, tid
from tracer.models import Project
from tracer.replica import ReplicaRouter

ROOT = Path(__file__).resolve().parent.parent

# Run in the configured process: which trace ids each kind of read sees.
PROBE = """
import json
from django.db import transaction
from django.test import Client
from tracer.models import Project, Trace
from tracer.replica import replica_reads

def ids(response):
    assert response.status_code == 200, response.content
    return sorted(t["trace_id"] for t in response.json()["data"])

auth = {"HTTP_AUTHORIZATION": "Bearer " + KEY}
out = {}
browser = Client(SERVER_NAME="localhost")
out["api_get"] = ids(browser.get("/api/v1/traces", **auth))
browser.post("/api/v1/traces", **auth)  # any write (this one is refused: 405) makes the browser sticky
out["api_get_after_a_write"] = ids(browser.get("/api/v1/traces", **auth))
out["api_get_other_browser"] = ids(Client(SERVER_NAME="localhost").get("/api/v1/traces", **auth))
with replica_reads():
    out["plain_read"] = sorted(Trace.objects.values_list("trace_id", flat=True))
    with transaction.atomic():
        out["read_to_write"] = sorted(Trace.objects.values_list("trace_id", flat=True))
    out["projects"] = sorted(Project.objects.values_list("slug", flat=True))
out["outside_a_request"] = sorted(Trace.objects.values_list("trace_id", flat=True))
print("PROBE" + json.dumps(out))
"""


def one_trace(project: Project, n: int) -> str:
    ingest_spans(project, otlp_span(sid(1), trace=tid(n), attrs=chat(input=10, output=5)))
    return tid(n)


@pytest.fixture
def replica_db() -> Iterator[str]:
    """A PostgreSQL database copied from the test database now (CREATE DATABASE .. TEMPLATE)."""
    if connection.vendor != "postgresql":
        pytest.skip("a read replica is a PostgreSQL feature (DATABASE_REPLICA_URL needs a PostgreSQL primary)")
    primary = connection.settings_dict["NAME"]
    name = f"{primary}_replica"
    connections.close_all()  # TEMPLATE copies only a database nobody is connected to
    with psycopg.connect(_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{primary}"')
    yield name
    with psycopg.connect(_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _url(database: str) -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{database}"


@pytest.mark.django_db(transaction=True)
def test_safe_requests_read_the_replica_and_writes_and_access_read_the_primary(project_a, key_a, request) -> None:
    old = one_trace(project_a, 1)
    replica = request.getfixturevalue("replica_db")  # the copy holds the first trace only
    new = one_trace(project_a, 2)
    Project.objects.create(name="Made after the copy", slug="late")

    env = {
        **os.environ,
        "DATABASE_URL": _url(connection.settings_dict["NAME"]),
        "DATABASE_REPLICA_URL": _url(replica),
        "OCTOTRACE_LOCAL_DEV": "1",
    }
    code = f"KEY = {key_a[1]!r}\n" + PROBE
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("PROBE")]
    seen = json.loads(line.removeprefix("PROBE"))

    assert seen["api_get"] == [old]  # the replica, behind the primary
    assert seen["api_get_after_a_write"] == sorted([old, new])  # this browser reads its own writes
    assert seen["api_get_other_browser"] == [old]
    assert seen["plain_read"] == [old]
    assert seen["read_to_write"] == sorted([old, new])  # inside a transaction: the primary
    assert "late" in seen["projects"]  # who may see what: the primary, always
    assert seen["outside_a_request"] == sorted([old, new])  # commands and workers: the primary


def test_the_router_sends_every_write_and_migration_to_the_primary() -> None:
    router = ReplicaRouter()
    assert router.db_for_write(Project) == "default"
    assert router.allow_migrate("replica", "tracer") is False
    assert router.allow_migrate("default", "tracer") is True
    assert router.db_for_read(Project) is None  # no replica configured in this process
