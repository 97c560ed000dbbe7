"""Reports computed in the background: a ReportRun row, a Celery task on the reports queue, and a
page that polls the row until it is done (so a long report shows progress, not a hanging page)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from reports import roi
from reports.common import started_in
from reports.models import ReportRun
from tracer.celery import task_enqueue
from tracer.models import Project, Trace

ROI_TASK = "reports.roi_run"
ROI_TIME_LIMIT_SECONDS = 660


def roi_report_start(*, project: Project, start_ns: int | None, end_ns: int | None, label: str, user: Any) -> ReportRun:
    """Record a pending ROI report of the traces started in [start_ns, end_ns) and enqueue it."""
    run = ReportRun.objects.create(
        project=project,
        kind=ReportRun.Kind.ROI,
        params={"start_ns": start_ns, "end_ns": end_ns, "label": label},
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    task_enqueue(ROI_TASK, run.pk)
    return run


def report_runs_recent(*, project: Project, kind: str = ReportRun.Kind.ROI, limit: int = 10) -> list[ReportRun]:
    """The project's latest runs of one kind, newest first."""
    return list(ReportRun.objects.filter(project=project, kind=kind).order_by("-created_at")[:limit])


def report_run_get(*, project: Project, run_id: int, kind: str = ReportRun.Kind.ROI) -> ReportRun | None:
    """One run of the project (None for another project's run: the page answers 404)."""
    return ReportRun.objects.filter(pk=run_id, project=project, kind=kind).first()


def report_traces(*, project: Project, params: dict[str, Any]):
    """The traces a run covers: those that started in its period."""
    return started_in(
        Trace.objects.filter(project=project), start_ns=params.get("start_ns"), end_ns=params.get("end_ns")
    )


def report_run_execute(*, run_id: int) -> bool:
    """Compute a pending report. False when another worker has claimed it already."""
    # A run left "running" past the task's time limit lost its worker (acks_late re-delivers it).
    abandoned = Q(
        status=ReportRun.Status.RUNNING, started_at__lt=timezone.now() - timedelta(seconds=ROI_TIME_LIMIT_SECONDS)
    )
    claimed = ReportRun.objects.filter(Q(status=ReportRun.Status.PENDING) | abandoned, pk=run_id).update(
        status=ReportRun.Status.RUNNING, started_at=timezone.now(), progress=0
    )
    if claimed != 1:
        return False
    run = ReportRun.objects.select_related("project").get(pk=run_id)

    def progress(percent: int) -> None:
        ReportRun.objects.filter(pk=run_id).update(progress=percent)

    result = roi.roi_compute(
        project=run.project, traces=report_traces(project=run.project, params=run.params), progress=progress
    )
    ReportRun.objects.filter(pk=run_id).update(
        status=ReportRun.Status.DONE, progress=100, result=result, finished_at=timezone.now()
    )
    return True


def report_run_fail(*, run_id: int, error: str) -> None:
    ReportRun.objects.filter(pk=run_id).exclude(status=ReportRun.Status.DONE).update(
        status=ReportRun.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )
