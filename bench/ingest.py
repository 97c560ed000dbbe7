"""End-to-end ingest benchmark: spans/s from the first OTLP export until every span is stored.

Synthetic multi-agent traces (20 spans each, see demo/synthetic.py) are recorded with the
OpenTelemetry SDK beforehand, then sent by the SDK's own OTLP/HTTP exporter from several threads.
The clock starts at the first export and stops when the database holds every span and every
batch is done. With --start it runs the server itself (gunicorn + one Celery worker) on the
database and broker named by DATABASE_URL / CELERY_BROKER_URL, and stops it afterwards.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/octotrace_bench \
    CELERY_BROKER_URL=redis://127.0.0.1:6379/12 OCTOTRACE_LOCAL_DEV=1 \
    .venv/bin/python bench/ingest.py --start --traces 5000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402
import requests  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExportResult  # noqa: E402

from demo import synthetic  # noqa: E402
from tracer.models import IngestBatch, Span  # noqa: E402
from tracer.projects import apikey_create, project_create  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_stack(port: int, web_workers: int, concurrency: int) -> list[subprocess.Popen]:
    env = {**os.environ}
    python = sys.executable
    web = subprocess.Popen(
        [
            python,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(web_workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    worker = subprocess.Popen(
        [
            python,
            "-m",
            "celery",
            "-A",
            "tracer",
            "worker",
            "--loglevel",
            "WARNING",
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    return [web, worker]


def _processes() -> dict[int, tuple[str, int, float]]:
    """pid -> (command name, parent pid, CPU seconds used so far), read from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        found[int(pid)] = (head.split("(", 1)[1], int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return found


def _cpu_seconds(roots: list[int]) -> dict[str, float]:
    """CPU seconds of PostgreSQL, and of each root process with its descendants."""
    table = _processes()
    out = {"postgres": sum(cpu for name, _, cpu in table.values() if name.startswith("postgres"))}
    for root in roots:
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            total += table.get(pid, ("", 0, 0.0))[2]
            stack.extend(child for child, (_, parent, _) in table.items() if parent == pid)
        out[str(root)] = total
    return out


def _self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="receiver base URL (default: the one --start runs)")
    parser.add_argument("--start", action="store_true", help="start gunicorn and one Celery worker here")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="the Celery worker's pool size")
    parser.add_argument("--traces", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=512, help="spans per export (the SDK default is 512)")
    parser.add_argument("--senders", type=int, default=4, help="exporting threads")
    parser.add_argument("--gzip", action="store_true", help="compress bodies with gzip")
    parser.add_argument(
        "--pre-encoded",
        action="store_true",
        help="encode the bodies before the clock starts and POST them with requests: measures the server "
        "alone, as when the exporters run on other machines (the SDK's encoding is pure Python and costly)",
    )
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if not args.url and not args.start:
        parser.error("give --url of a running server, or --start")

    call_command("migrate", verbosity=0)
    project = project_create(name=f"bench {time.time_ns()}")
    _, secret = apikey_create(project=project)

    t0 = time.perf_counter()
    spans = synthetic.make_spans(args.traces, seed=1, service_name="bench")
    chunks = [spans[i : i + args.batch_size] for i in range(0, len(spans), args.batch_size)]
    print(f"recorded {len(spans)} spans in {len(chunks)} exports ({time.perf_counter() - t0:.1f}s, not timed)")

    procs: list[subprocess.Popen] = []
    url = args.url
    if args.start:
        port = _free_port()
        procs = _start_stack(port, args.web_workers, args.concurrency)
        url = f"http://127.0.0.1:{port}"
        time.sleep(3)  # let the worker connect to the broker
    try:
        failures: list[str] = []
        next_chunk = iter(range(len(chunks)))
        lock = threading.Lock()

        bodies = [synthetic.encode(chunk) for chunk in chunks] if args.pre_encoded else []

        def send() -> None:
            if args.pre_encoded:
                session = requests.Session()
                headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/x-protobuf"}
                while True:
                    with lock:
                        index = next(next_chunk, None)
                    if index is None:
                        return
                    response = session.post(f"{url}/v1/traces", data=bodies[index], headers=headers, timeout=60)
                    if response.status_code != 200:
                        failures.append(f"export {index}: HTTP {response.status_code}")
            exporter = OTLPSpanExporter(
                endpoint=f"{url}/v1/traces",
                headers={"Authorization": f"Bearer {secret}"},
                compression=Compression.Gzip if args.gzip else Compression.NoCompression,
                timeout=60,
            )
            while True:
                with lock:
                    index = next(next_chunk, None)
                if index is None:
                    return
                if exporter.export(chunks[index]) is not SpanExportResult.SUCCESS:
                    failures.append(f"export {index} failed")

        cpu_before = (_self_cpu_seconds(), _cpu_seconds([p.pid for p in procs]))
        start = time.perf_counter()
        threads = [threading.Thread(target=send) for _ in range(args.senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent = time.perf_counter() - start
        if failures:
            sys.exit(f"{len(failures)} exports failed: {failures[:3]}")

        batches = IngestBatch.objects.filter(project=project)
        while time.perf_counter() - start < args.timeout:
            unfinished = batches.exclude(status=IngestBatch.Status.DONE).exists()
            if not unfinished and Span.objects.filter(project=project).count() == len(spans):
                break
            time.sleep(0.05)
        else:
            sys.exit(f"not every span was stored within {args.timeout}s")
        total = time.perf_counter() - start
        client_cpu = _self_cpu_seconds() - cpu_before[0]
        cpu_after = _cpu_seconds([p.pid for p in procs])
        cpu = {key: cpu_after[key] - cpu_before[1].get(key, 0.0) for key in cpu_after}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)

    print(f"machine: {platform.node()} {os.cpu_count()} cpus, {platform.python_version()}, db {connection.vendor}")
    print(
        f"settings: senders={args.senders} batch={args.batch_size} gzip={args.gzip} pre_encoded={args.pre_encoded} "
        f"web_workers={args.web_workers} worker_concurrency={args.concurrency}"
    )
    print(f"received: {len(spans)} spans in {sent:.2f}s = {len(spans) / sent:,.0f} spans/s (all answered 200)")
    print(f"end-to-end: {len(spans)} spans stored in {total:.2f}s = {len(spans) / total:,.0f} spans/s")
    per_span = 1e6 / len(spans)
    parts = [
        f"client (encode + send + polling) {client_cpu * per_span:.0f} us",
        f"postgres {cpu['postgres'] * per_span:.0f} us",
    ]
    for name, proc in zip(("web", "worker"), procs, strict=False):
        parts.append(f"{name} {cpu[str(proc.pid)] * per_span:.0f} us")
    print("cpu per span: " + ", ".join(parts))


if __name__ == "__main__":
    main()
