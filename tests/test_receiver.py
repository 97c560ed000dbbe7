"""The OTLP/HTTP receiver, `POST /v1/traces` (tracer/views.py)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.test import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.factories import CORPUS_CAPTURES, corpus_bytes, corpus_protobuf, decode_status, gzip_bomb
from tracer import otlp
from tracer.models import ApiKey, IngestBatch, Project
from tracer.projects import apikey_revoke

URL = "/v1/traces"
REPO = Path(__file__).resolve().parent.parent
STEM = "openinference-openai-multiagent"
GZIP_STEM, GZIP_FILE, _ = next(c for c in CORPUS_CAPTURES if c[2] == "gzip")

Key = tuple[ApiKey, str]


def post(
    client: Client,
    body: bytes,
    *,
    secret: str | None,
    content_type: str = otlp.PROTOBUF,
    encoding: str = "",
    **headers: str,
):
    if secret is not None:
        headers.setdefault("Authorization", f"Bearer {secret}")
    if encoding:
        headers["Content-Encoding"] = encoding
    return client.post(URL, data=body, content_type=content_type, headers=headers)


def expected_span_count(stem: str) -> int:
    return json.loads(corpus_bytes(f"{stem}.expected.json"))["span_count"]


# --- Accepting ----------------------------------------------------------------------------------


def test_it_accepts_protobuf_and_answers_an_empty_export_response(client: Client, key_a: Key) -> None:
    response = post(client, corpus_protobuf(STEM), secret=key_a[1])

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(response.content) == ExportTraceServiceResponse()
    assert response.content == b""
    assert IngestBatch.objects.count() == 1


def test_it_accepts_json_and_answers_an_empty_json_object(client: Client, key_a: Key) -> None:
    response = post(client, corpus_bytes(f"{STEM}.json"), secret=key_a[1], content_type="application/json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {}
    batch = IngestBatch.objects.get()
    assert batch.content_type == "application/json"
    assert batch.span_count == expected_span_count(STEM)


def test_it_accepts_gzip_bodies(client: Client, key_a: Key) -> None:
    body = corpus_bytes(GZIP_FILE)

    response = post(client, body, secret=key_a[1], encoding="gzip")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-protobuf"
    batch = IngestBatch.objects.get()
    assert batch.content_encoding == "gzip"
    assert batch.span_count == expected_span_count(GZIP_STEM)


def test_it_accepts_gzipped_json(client: Client, key_a: Key) -> None:
    body = gzip.compress(corpus_bytes(f"{STEM}.json"))

    response = post(client, body, secret=key_a[1], content_type="application/json", encoding="gzip")

    assert response.status_code == 200
    assert response.json() == {}
    assert IngestBatch.objects.get().span_count == expected_span_count(STEM)


def test_it_stores_the_raw_body_exactly_as_received(client: Client, key_a: Key) -> None:
    body = corpus_bytes(GZIP_FILE)

    response = post(
        client,
        body,
        secret=key_a[1],
        content_type="application/x-protobuf; proto=opentelemetry",
        encoding="GZIP",
        **{"User-Agent": "OTel-OTLP-Exporter-Python/1.45.2"},
    )

    assert response.status_code == 200
    batch = IngestBatch.objects.get()
    # Still compressed: the stored body is what was acknowledged, byte for byte.
    assert bytes(batch.body) == body
    assert batch.body_size == len(body)
    assert batch.content_type == "application/x-protobuf"
    assert batch.content_encoding == "gzip"
    assert batch.user_agent == "OTel-OTLP-Exporter-Python/1.45.2"
    assert batch.span_count == expected_span_count(GZIP_STEM)
    assert batch.status == IngestBatch.Status.PENDING
    assert batch.project_id == key_a[0].project_id


def test_it_enqueues_the_batch_only_on_commit(client: Client, key_a: Key, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, corpus_protobuf(STEM), secret=key_a[1])

    assert response.status_code == 200
    assert IngestBatch.objects.count() == 1
    assert len(callbacks) == 1


def test_it_enqueues_nothing_for_a_rejected_body(
    client: Client, key_a: Key, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, b"not json", secret=key_a[1], content_type="application/json")

    assert response.status_code == 400
    assert callbacks == []


def test_it_accepts_a_valid_request_without_spans_and_stores_nothing(client: Client, key_a: Key) -> None:
    empty_json = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": []}]}]}).encode()
    # One empty ResourceSpans (field 1, length 0). Not b"": Django's test client drops the
    # Content-Type header of an empty body.
    empty_protobuf = b"\x0a\x00"

    protobuf = post(client, empty_protobuf, secret=key_a[1])
    as_json = post(client, empty_json, secret=key_a[1], content_type="application/json")

    assert protobuf.status_code == 200
    assert ExportTraceServiceResponse.FromString(protobuf.content) == ExportTraceServiceResponse()
    assert as_json.status_code == 200
    assert as_json.json() == {}
    assert IngestBatch.objects.count() == 0


# --- Authentication and tenancy -------------------------------------------------------------------


def test_it_rejects_a_request_without_a_key(client: Client, key_a: Key) -> None:
    response = post(client, corpus_protobuf(STEM), secret=None)

    assert response.status_code == 401
    assert decode_status(response.content) == (16, "missing, unknown or revoked API key")
    assert IngestBatch.objects.count() == 0


def test_it_rejects_a_wrong_key(client: Client, key_a: Key) -> None:
    response = post(client, corpus_protobuf(STEM), secret=key_a[1] + "x")

    assert response.status_code == 401
    assert IngestBatch.objects.count() == 0


def test_it_rejects_a_revoked_key(client: Client, key_a: Key) -> None:
    apikey_revoke(key=key_a[0])

    response = post(client, corpus_protobuf(STEM), secret=key_a[1])

    assert response.status_code == 401
    assert IngestBatch.objects.count() == 0


def test_it_answers_401_in_json_to_json_requests(client: Client, db) -> None:
    response = post(client, b"{}", secret="octo_nonexistent", content_type="application/json")

    assert response.status_code == 401
    assert response.json() == {"code": 16, "message": "missing, unknown or revoked API key"}


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda s: {"Authorization": f"Bearer {s}"}, id="authorization-bearer"),
        pytest.param(lambda s: {"Authorization": f"bearer   {s}"}, id="authorization-lowercase-scheme"),
        pytest.param(lambda s: {"x-octotrace-key": s}, id="x-octotrace-key"),
    ],
)
def test_it_accepts_the_key_in_either_header(client: Client, key_a: Key, header) -> None:
    response = client.post(URL, data=corpus_protobuf(STEM), content_type=otlp.PROTOBUF, headers=header(key_a[1]))

    assert response.status_code == 200
    assert IngestBatch.objects.get().project_id == key_a[0].project_id


def test_a_key_writes_only_into_its_own_project(
    client: Client, project_a: Project, project_b: Project, key_a: Key, key_b: Key
) -> None:
    assert post(client, corpus_protobuf(STEM), secret=key_a[1]).status_code == 200
    assert post(client, corpus_protobuf(GZIP_STEM), secret=key_a[1]).status_code == 200
    assert post(client, corpus_protobuf(STEM), secret=key_b[1]).status_code == 200

    assert IngestBatch.objects.filter(project=project_a).count() == 2
    assert IngestBatch.objects.filter(project=project_b).count() == 1
    assert {b.project for b in IngestBatch.objects.filter(project=project_a)} == {project_a}


def test_it_records_when_a_key_was_last_used(client: Client, key_a: Key, key_b: Key) -> None:
    key, secret = key_a
    assert key.last_used_at is None

    response = post(client, corpus_protobuf(STEM), secret=secret)

    assert response.status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None
    key_b[0].refresh_from_db()
    assert key_b[0].last_used_at is None


# --- Rejecting --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", "multipart/form-data; boundary=x", ""])
def test_it_rejects_other_content_types(client: Client, key_a: Key, content_type: str) -> None:
    response = post(client, corpus_protobuf(STEM), secret=key_a[1], content_type=content_type)

    assert response.status_code == 415
    assert "unsupported Content-Type" in response.json()["message"]
    assert IngestBatch.objects.count() == 0


def test_it_rejects_unsupported_content_encodings(client: Client, key_a: Key) -> None:
    response = post(client, corpus_protobuf(STEM), secret=key_a[1], encoding="br")

    assert response.status_code == 415
    code, message = decode_status(response.content)
    assert code == 3
    assert "'br'" in message
    assert IngestBatch.objects.count() == 0


def test_it_rejects_undecodable_protobuf_with_the_reason(client: Client, key_a: Key) -> None:
    response = post(client, b"\x0a\xff\xff\xff\xff\x0f", secret=key_a[1])

    assert response.status_code == 400
    assert response["Content-Type"] == "application/x-protobuf"
    code, message = decode_status(response.content)
    assert code == 3
    assert "not a valid ExportTraceServiceRequest protobuf" in message
    assert IngestBatch.objects.count() == 0


def test_it_rejects_invalid_json_with_the_reason(client: Client, key_a: Key) -> None:
    response = post(client, b'{"resourceSpans": [', secret=key_a[1], content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == 3
    assert "body is not valid JSON" in response.json()["message"]
    assert IngestBatch.objects.count() == 0


def test_it_rejects_json_with_a_bad_id_and_says_which(client: Client, key_a: Key) -> None:
    document = json.loads(corpus_bytes(f"{STEM}.json"))
    document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "abcd"

    response = post(client, json.dumps(document).encode(), secret=key_a[1], content_type="application/json")

    assert response.status_code == 400
    message = response.json()["message"]
    assert "resourceSpans[0].scopeSpans[0].spans[0].traceId" in message
    assert "32 hex digits" in message
    assert IngestBatch.objects.count() == 0


def test_it_rejects_deeply_nested_json_with_a_400(client: Client, key_a: Key) -> None:
    # json.loads raises RecursionError on this, which is not a BadBody: without a guard the
    # receiver answers 500 (and logs a traceback) to a hostile client.
    response = post(client, b"[" * 100_000, secret=key_a[1], content_type="application/json")

    assert response.status_code == 400
    assert IngestBatch.objects.count() == 0


def test_it_rejects_truncated_gzip(client: Client, key_a: Key) -> None:
    body = corpus_bytes(GZIP_FILE)

    response = post(client, body[: len(body) // 2], secret=key_a[1], encoding="gzip")

    assert response.status_code == 400
    assert "truncated" in decode_status(response.content)[1]
    assert IngestBatch.objects.count() == 0


def test_it_rejects_bodies_over_the_limit(client: Client, key_a: Key, settings) -> None:
    settings.OCTOTRACE_MAX_BODY_BYTES = 4096
    body = corpus_protobuf(STEM)
    assert len(body) > 4096

    response = post(client, body, secret=key_a[1])

    assert response.status_code == 413
    code, message = decode_status(response.content)
    assert code == 8
    assert "4096" in message
    assert IngestBatch.objects.count() == 0


def test_it_rejects_gzip_bombs(client: Client, key_a: Key, settings) -> None:
    settings.OCTOTRACE_MAX_BODY_BYTES = 1024 * 1024
    bomb = gzip_bomb(64 * 1024 * 1024)
    # Small on the wire, so only the decompressed size can catch it.
    assert len(bomb) < settings.OCTOTRACE_MAX_BODY_BYTES

    response = post(client, bomb, secret=key_a[1], encoding="gzip")

    assert response.status_code == 413
    assert "decompressed body exceeds the limit" in decode_status(response.content)[1]
    assert IngestBatch.objects.count() == 0


def test_it_accepts_a_gzip_body_whose_decompressed_size_is_under_the_limit(
    client: Client, key_a: Key, settings
) -> None:
    body = corpus_bytes(GZIP_FILE)
    settings.OCTOTRACE_MAX_BODY_BYTES = len(corpus_protobuf(GZIP_STEM))

    response = post(client, body, secret=key_a[1], encoding="gzip")

    assert response.status_code == 200
    assert IngestBatch.objects.count() == 1


def test_it_answers_405_to_get(client: Client, key_a: Key) -> None:
    response = client.get(URL, headers={"Authorization": f"Bearer {key_a[1]}"})

    assert response.status_code == 405
    assert response["Allow"] == "POST"


# --- Database unavailable: a real server, a real unreachable PostgreSQL -------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server_without_database(tmp_path: Path) -> Iterator[str]:
    """gunicorn serving Octotrace with DATABASE_URL pointing at a port where nothing listens."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing",
        "OCTOTRACE_LOCAL_DEV": "1",
        "OCTOTRACE_VAR_DIR": str(tmp_path / "var"),
        "OCTOTRACE_RETRY_AFTER_SECONDS": "7",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    log = tempfile.TemporaryFile()
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read().decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("gunicorn did not start listening within 30 s")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_it_answers_503_with_retry_after_when_the_database_is_unreachable(server_without_database: str) -> None:
    response = requests.post(
        f"{server_without_database}{URL}",
        data=corpus_protobuf(STEM),
        headers={"Content-Type": otlp.PROTOBUF, "Authorization": "Bearer octo_any-key-will-do"},
        timeout=30,
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.headers["Content-Type"] == "application/x-protobuf"
    assert decode_status(response.content) == (14, "database unavailable, retry later")
