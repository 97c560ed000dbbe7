"""Reports that pay for themselves: CSV exports, ROI per workflow, token waste, what-if pricing, budgets.

One module per report; each exposes plain `<entity>_<action>(*, ...)` functions that views, tasks
and the `export` command call. See docs/reports.md for how each figure is computed.
"""
