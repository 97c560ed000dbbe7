"""Checks a running Octotrace compose stack from outside, as a user would: docker/compose_test.sh
starts the stack, runs this, and tears the stack down. Standard library only (it runs on the host).

1. The web container answers (a made-up key gets 401).
2. `manage.py createproject` in the web container makes a project and its ingest key (and a read key
   when `createkey` has scopes).
3. A real OTLP capture (tests/fixtures/otlp) posted to /v1/traces is read back through
   GET /api/v1/traces with its span count and tokens.
4. Batches are posted, the worker container is killed (SIGKILL) while it works through them, more
   batches are posted while it is down, it is started again, and every span that was acknowledged
   (HTTP 200) is stored exactly once, with no batch failed.

Every wait polls an observable result with a deadline. Exit status 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "otlp"
FIXTURE = "otel-openai-v2-multiagent-content"
PROJECT_SLUG = "compose-test"


class Failure(Exception):
    pass


def http(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def poll(what: str, probe: Callable[[], tuple[bool, object]], *, deadline_s: float, every_s: float = 1.0) -> object:
    """Call `probe` until it answers (True, value); fail with its last value after `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    last: object = None
    while True:
        try:
            done, last = probe()
        except (OSError, ValueError) as exc:  # connection refused or reset while a container starts
            done, last = False, repr(exc)
        if done:
            return last
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not reached within {deadline_s:.0f} s (last seen: {last})")
        time.sleep(every_s)


def podman(*args: str, check: bool = True) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise Failure(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


def manage(container: str, *args: str) -> str:
    return podman("exec", container, "python", "manage.py", *args)


def shown_key(output: str) -> str:
    match = re.search(r"key \(shown once[^)]*\):\s*(\S+)", output)
    if not match:
        raise Failure(f"no key in the command's output: {output!r}")
    return match.group(1)


class Stack:
    def __init__(self, *, url: str, web: str, worker: str) -> None:
        self.url = url.rstrip("/")
        self.web = web
        self.worker = worker
        self.ingest_key = ""
        self.read_key = ""

    def post_traces(self, body: bytes, *, content_type: str, gzip: bool = False) -> int:
        headers = {"Authorization": f"Bearer {self.ingest_key}", "Content-Type": content_type}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        status, answer = http("POST", f"{self.url}/v1/traces", body=body, headers=headers)
        if status != 200:
            print(f"  POST /v1/traces answered {status}: {answer[:300]!r}")
        return status

    def traces(self, query: str = "limit=1") -> dict[str, Any]:
        status, answer = http(
            "GET", f"{self.url}/api/v1/traces?{query}", headers={"Authorization": f"Bearer {self.read_key}"}
        )
        if status != 200:
            raise ValueError(f"GET /api/v1/traces answered {status}: {answer[:300]!r}")
        return json.loads(answer)

    def stored(self) -> tuple[int, int]:
        """(traces, spans) stored in the project, as the read API counts them."""
        totals = self.traces()["totals"]
        return totals["trace_count"], totals["span_count"]

    def worker_running(self) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", self.worker).strip() == "true"


def check_web_answers(stack: Stack) -> str:
    def probe() -> tuple[bool, object]:
        status, _ = http("POST", f"{stack.url}/v1/traces", body=b"", headers={"Authorization": "Bearer made-up"})
        return status == 401, status

    poll("web answers 401 to a made-up key", probe, deadline_s=180)
    return f"{stack.url}/v1/traces answers 401 to a made-up key"


def check_project_and_keys(stack: Stack) -> str:
    stack.ingest_key = shown_key(manage(stack.web, "createproject", "Compose test", "--slug", PROJECT_SLUG))
    if "--scope" in manage(stack.web, "createkey", "--help"):
        stack.read_key = shown_key(manage(stack.web, "createkey", PROJECT_SLUG, "--scope", "read", "--name", "read"))
        return f"project {PROJECT_SLUG} with an ingest key and a read key (manage.py in the web container)"
    stack.read_key = stack.ingest_key
    return f"project {PROJECT_SLUG} and its key (manage.py createproject in the web container)"


def check_fixture_read_back(stack: Stack) -> str:
    expected = json.loads((FIXTURES / f"{FIXTURE}.expected.json").read_text())
    ((trace_id, facts),) = json.loads((FIXTURES / "totals.json").read_text())[FIXTURE].items()
    path = FIXTURES / expected["file"]
    status = stack.post_traces(
        path.read_bytes(), content_type=expected["content_type"], gzip=expected["content_encoding"] == "gzip"
    )
    if status != 200:
        raise Failure(f"POST of {path.name} answered {status}")

    def probe() -> tuple[bool, object]:
        rows = [row for row in stack.traces(f"q={trace_id}")["data"] if row["trace_id"] == trace_id]
        return bool(rows) and rows[0]["span_count"] == expected["span_count"], rows

    (row,) = poll(f"trace {trace_id} stored with its spans", probe, deadline_s=120)
    got = (row["span_count"], row["input_tokens"], row["output_tokens"])
    want = (expected["span_count"], facts["input"], facts["output"])
    if got != want:
        raise Failure(f"trace {trace_id}: (spans, input, output tokens) {got}, expected {want}")
    return f"{path.name} posted and read back: {got[0]} spans, {got[1]} input and {got[2]} output tokens"


def load_batch(number: int, spans: int) -> bytes:
    """OTLP/JSON: one trace of `spans` spans (a root and its children), ids derived from `number`."""
    trace_id = f"c0de{number:028x}"
    start = time.time_ns()
    rows = []
    for index in range(spans):
        row: dict[str, Any] = {
            "traceId": trace_id,
            "spanId": f"{number:08x}{index:08x}",
            "name": "compose-test root" if index == 0 else f"step {index}",
            "kind": 1,
            "startTimeUnixNano": str(start + index * 1000),
            "endTimeUnixNano": str(start + 10_000_000 + index * 1000),
        }
        if index:
            row["parentSpanId"] = f"{number:08x}{0:08x}"
        rows.append(row)
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "compose-test"}}]}
    document = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "load"}, "spans": rows}]}]}
    return json.dumps(document).encode()


def post_load(stack: Stack, numbers: range, spans: int) -> int:
    """Post one batch per number; returns the spans acknowledged (a batch answered 200)."""
    acknowledged = 0
    for number in numbers:
        if stack.post_traces(load_batch(number, spans), content_type="application/json") == 200:
            acknowledged += spans
    return acknowledged


def worker_logs(stack: Stack) -> str:
    """The worker container's output over both its runs (Celery logs to stderr)."""
    result = subprocess.run(
        ["podman", "logs", stack.worker], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60
    )
    return result.stdout


def batch_states(stack: Stack) -> dict[str, int]:
    code = (
        "import json; from django.db.models import Count; from tracer.models import IngestBatch; "
        "print(json.dumps(dict(IngestBatch.objects.values_list('status').annotate(n=Count('pk')))))"
    )
    return json.loads(manage(stack.web, "shell", "-c", code).strip().splitlines()[-1])


def check_worker_restart_loses_nothing(stack: Stack, *, before: int, after: int, spans: int) -> str:
    base_traces, base_spans = stack.stored()
    acknowledged_before_kill = acknowledged = post_load(stack, range(1, before + 1), spans)
    # The worker has started on them: kill it while the rest of the batches wait or are in hand.
    _, spans_at_kill = poll(
        "the worker stores the first load batch",
        lambda: ((found := stack.stored())[1] > base_spans, found),
        deadline_s=180,
        every_s=0.2,
    )
    podman("kill", "--signal", "KILL", stack.worker)
    killed_at = time.monotonic()
    at_kill = f"{spans_at_kill - base_spans}/{acknowledged_before_kill} acknowledged spans stored at the kill"
    print(f"  worker killed (SIGKILL), {at_kill}")
    # Ingest goes on while the worker is down (or being restarted by its restart policy).
    acknowledged += post_load(stack, range(before + 1, before + after + 1), spans)
    if stack.worker_running():
        how = "restarted by its restart policy"
    else:
        podman("start", stack.worker)
        how = "started again with podman start"
    print(f"  {after} more batches posted after the kill; worker {how}")
    want = (base_traces + acknowledged // spans, base_spans + acknowledged)

    def probe() -> tuple[bool, object]:
        found = stack.stored()
        if found[1] > want[1]:
            raise Failure(f"more spans stored than acknowledged: {found[1]} > {want[1]} (a batch counted twice)")
        return found == want, found

    poll("every acknowledged span stored", probe, deadline_s=300, every_s=2)
    recovered_s = time.monotonic() - killed_at
    states = batch_states(stack)
    if set(states) != {"done"}:
        raise Failure(f"batches not all done after the restart: {states}")
    requeued = sum(map(int, re.findall(r"re-enqueued (\d+) stuck ingest batch", worker_logs(stack))))
    return (
        f"worker killed ({at_kill}), {how}: all {acknowledged} acknowledged spans of {before + after} batches "
        f"stored once, {recovered_s:.0f} s after the kill; batches {states}; "
        f"the sweeper re-enqueued {requeued} batch(es) left unfinished by the kill"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the web container's published address")
    parser.add_argument("--web", required=True, help="web container name")
    parser.add_argument("--worker", required=True, help="worker container name")
    parser.add_argument("--batches-before", type=int, default=int(os.environ.get("COMPOSE_TEST_BATCHES", "30")))
    parser.add_argument("--batches-after", type=int, default=10)
    parser.add_argument("--spans", type=int, default=100, help="spans per load batch")
    args = parser.parse_args()
    stack = Stack(url=args.url, web=args.web, worker=args.worker)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("web answers", lambda: check_web_answers(stack)),
        ("project and keys", lambda: check_project_and_keys(stack)),
        ("OTLP capture read back", lambda: check_fixture_read_back(stack)),
        (
            "worker restart mid-ingest",
            lambda: check_worker_restart_loses_nothing(
                stack, before=args.batches_before, after=args.batches_after, spans=args.spans
            ),
        ),
    ]
    for name, check in checks:
        started = time.monotonic()
        try:
            detail = check()
        except Failure as failure:
            print(f"FAIL {name}: {failure}", flush=True)
            return 1
        except Exception as error:
            print(f"FAIL {name}: {error!r} (traceback below)", flush=True)
            raise
        print(f"PASS {name} ({time.monotonic() - started:.0f} s): {detail}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
