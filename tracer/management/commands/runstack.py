from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run web, Celery worker and Celery beat together (local use); Ctrl-C stops all of them."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, addr: str, **options) -> None:
        python = sys.executable
        commands = {
            "web": [python, "manage.py", "runserver", addr, "--noreload"],
            "worker": [python, "-m", "celery", "-A", "tracer", "worker", "--loglevel", "INFO"],
            "beat": [python, "-m", "celery", "-A", "tracer", "beat", "--loglevel", "INFO"],
        }
        procs: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, stop)
        for name, command in commands.items():
            # Own process group: the terminal's Ctrl-C reaches us once and we stop them in order.
            procs[name] = subprocess.Popen(command, start_new_session=True, env=os.environ.copy())
            self.stdout.write(f"started {name} (pid {procs[name].pid}): {' '.join(command[1:])}")
        self.stdout.write(f"Octotrace is running at http://{addr}/ - press Ctrl-C to stop.")
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with code {proc.returncode}; stopping the rest")
                        stopping = True
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for name, proc in procs.items():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name} did not stop in time; killing it")
                    proc.kill()
            self.stdout.write("stopped.")
