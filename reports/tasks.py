"""Celery tasks of the reports: thin wrappers that take ids and call one service each.

Routed to the reports queue by their "reports." names (tracer/celery.py task_routes); the beat
schedule names them by string there."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.db import InterfaceError, OperationalError

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
    name=budgets.BUDGETS_CHECK_TASK,
    acks_late=True,
    ignore_result=True,
    # One query and a message per project with a budget.
    soft_time_limit=50,
    time_limit=60,
)
def budgets_check() -> int:
    """Beat: one budget check per project, all for this instant."""
    return budgets.budgets_sweep()


@shared_task(
    name=budgets.BUDGET_CHECK_TASK,
    acks_late=True,
    ignore_result=True,
    # The database went away or was busy: the check is idempotent (the alert rows' unique
    # constraint), so it runs again after a short, growing wait.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=10,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=120,
    time_limit=150,
)
def budget_check_project(project_id: int, now: str) -> int:
    """`now`: the sweep's instant (ISO 8601), so that every project is checked for the same period
    however long the task waited in the queue."""
    return budgets.budget_check_project(project_id=project_id, now=datetime.fromisoformat(now)).recorded


@shared_task(
    name=budgets.ALERT_DELIVER_TASK,
    acks_late=True,
    ignore_result=True,
    # Network errors (SMTP, a webhook unreachable, timing out or answering 5xx/429) are worth
    # another try after a growing wait: 30 s, 60 s, 120 s, 240 s (with jitter), under
    # budgets.RESEND_AFTER in all. A refused or rejected webhook is not retried here; the
    # project's next check enqueues it again after RESEND_AFTER, up to budgets.MAX_ATTEMPTS.
    autoretry_for=(OSError,),
    retry_backoff=30,
    retry_backoff_max=240,
    retry_jitter=True,
    max_retries=budgets.MAX_ATTEMPTS - 1,
    # The webhook's timeout and an SMTP exchange's, with room.
    soft_time_limit=60,
    time_limit=90,
)
def alert_deliver(alert_id: int) -> bool | None:
    return budgets.alert_deliver(alert_id=alert_id)
