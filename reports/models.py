"""The reports' own rows: what a successful run is worth, budgets and their alerts, async report runs.

These models were born in the dashboard app and moved here with their tables: each keeps its
`dashboard_*` table (`db_table`), so the move changed no row (reports/migrations/0001).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from tracer.models import Project


class WorkflowValue(models.Model):
    """What one successful run of a workflow (a trace's root span name) is worth, in USD."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    workflow = models.TextField()
    value_usd = models.DecimalField(max_digits=14, decimal_places=6)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        db_table = "dashboard_workflowvalue"
        constraints = [
            # One value per workflow; the ROI report reads all of a project's values by this prefix.
            models.UniqueConstraint(fields=["project", "workflow"], name="workflowvalue_project_workflow_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow}: ${self.value_usd} per successful run"


class Budget(models.Model):
    class Period(models.TextChoices):
        DAILY = "daily"
        MONTHLY = "monthly"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    period = models.CharField(max_length=8, choices=Period.choices)
    amount_usd = models.DecimalField(max_digits=14, decimal_places=2)
    # Comma-separated addresses; empty means the project's owners.
    email_to = models.TextField(blank=True, default="")
    # Optional: POSTed a signed JSON body on each alert (reports/webhooks.py).
    webhook_url = models.URLField(max_length=500, blank=True, default="")
    # The HMAC key each webhook POST is signed with, issued when the URL is set or changed and on
    # "rotate". Stored because signing needs it; shown to the owner once, when issued, never again.
    webhook_secret = models.CharField(max_length=64, blank=True, default="")
    # Not a column: set by reports.budgets.budget_set on the budget it returns when that call
    # issued a new webhook secret, so that the page which saved it can show it once.
    new_webhook_secret: str | None = None
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "dashboard_budget"
        constraints = [
            # One daily and one monthly budget per project; the banner and the check read by project.
            models.UniqueConstraint(fields=["project", "period"], name="budget_project_period_uniq"),
            models.CheckConstraint(condition=models.Q(amount_usd__gt=0), name="budget_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.project} {self.period} ${self.amount_usd}"


class BudgetAlert(models.Model):
    """One threshold crossed in one period, and the state of its delivery. The unique constraint is
    what makes an alert go out once per period per threshold even when two budget checks run at
    the same time: the second insert fails and that check enqueues nothing (reports/budgets.py)."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts", db_index=False)
    # First day of the period (the day, or the 1st of the month), UTC.
    period_start = models.DateField()
    threshold = models.PositiveSmallIntegerField()  # percent: 50, 90, 100
    spend_usd = models.DecimalField(max_digits=20, decimal_places=10)
    created_at = models.DateTimeField(default=timezone.now)
    # Set while one delivery task sends it; a claim older than CLAIM_TIMEOUT may be taken again.
    claimed_at = models.DateTimeField(null=True, blank=True)
    # When the last delivery attempt began: an undelivered alert untouched for long is sent again.
    attempted_at = models.DateTimeField(null=True, blank=True)
    # The email went out (a retry after a failed webhook does not send it again).
    email_sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Why the last attempt failed (empty once delivered).
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "dashboard_budgetalert"
        constraints = [
            # Once per period per threshold.
            models.UniqueConstraint(
                fields=["budget", "period_start", "threshold"], name="budgetalert_budget_period_threshold_uniq"
            ),
        ]
        indexes = [
            # The check's retry pass: alerts not delivered yet.
            models.Index(
                fields=["created_at"], name="budgetalert_undelivered_idx", condition=models.Q(delivered_at=None)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.budget} {self.threshold}% of {self.period_start}"


class ReportRun(models.Model):
    """A report computed by a Celery task (reports queue); the page polls it until it is done."""

    class Kind(models.TextChoices):
        ROI = "roi"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # The inputs (period in ns, label), JSON.
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)  # percent
    # The report, JSON with money as decimal strings.
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "dashboard_reportrun"
        indexes = [
            # The reports page: a project's latest runs of one kind.
            models.Index(fields=["project", "kind", "-created_at"], name="reportrun_project_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} report {self.pk} ({self.status})"
