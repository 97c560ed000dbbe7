"""GPU telemetry and attribution (issue 6).

- `samples`: the sample record every way in produces, and the bulk writer of devices and samples.
- `sampling`: the Celery sampler on GPU hosts (NVML through octotrace.nvml).
- `metrics`: OTLP metrics (`POST /v1/metrics`, from `octotrace gpu-agent` or any collector using the
  `hw.gpu.*` names) into samples, through a durable batch like trace ingest.
- `retention`: per-minute rollups of old samples, and pruning.
- `prices`: GPU-hour price defaults per GPU model, and endpoints (a deployment and its GPUs).
- `attribution`: each LLM span's share of its endpoint's GPU seconds, energy and dollars.

See docs/gpu-attribution.md for the model and its limits.
"""
