"""The demo: what `make run` shows a new user, never part of a production server.

`manage.py demo` creates a `demo`/`demo` superuser and a project filled with runs of the example
crew (`examples/research_crew/`) against the mock NIM, and SIMULATED GPU telemetry for it
(`demo.gpu`, the SDK's gpu-agent on the fake NVML of `octotrace_testing`). `demo.synthetic` makes
synthetic multi-agent traces for the benchmarks (bench/).

The app is installed only in local development (`OCTOTRACE_LOCAL_DEV`) or with `OCTOTRACE_DEMO=1`
(config/settings.py); the production image does not contain it. It sits on top of the layers: it
may import anything, and nothing imports it.
"""
