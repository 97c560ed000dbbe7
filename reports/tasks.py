"""Celery tasks of the reports: thin wrappers that take ids and call one service each.

Routed to the reports queue by their "reports." names (tracer/celery.py task_routes)."""

from __future__ import annotations

from celery import shared_task

from reports import budgets, runs


@shared_task(
    name=runs.ROI_TASK,
    acks_late=True,
    ignore_result=True,
    # No automatic retry: a failed report says why on its page, and the user runs it again.
    soft_time_limit=runs.ROI_TIME_LIMIT_SECONDS - 60,
    time_limit=runs.ROI_TIME_LIMIT_SECONDS,
)
def roi_run(run_id: int) -> None:
    try:
        runs.report_run_execute(run_id=run_id)
    except Exception as exc:
        runs.report_run_fail(run_id=run_id, error=f"{type(exc).__name__}: {exc}")
        raise


@shared_task(
    name="reports.budgets_check",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=240,
    time_limit=300,
)
def budgets_check() -> int:
    return budgets.budgets_check().delivered
