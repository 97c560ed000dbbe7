"""The reports domain: CSV exports, usage per agent and model, ROI per workflow, token waste, what-if
pricing, budgets and their alerts, and the background report runs.

Layer: it may import `tracer` (the server core), never `dashboard` (the web UI, which renders these
reports' pages). One module per report; each exposes plain `<entity>_<action>(*, ...)` functions
that the dashboard's views, the tasks (`reports/tasks.py`), the read API's export
(`reports/api.py`) and the `export` command call. See docs/reports.md for how each figure is
computed.
"""
