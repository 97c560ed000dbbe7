from __future__ import annotations

from django.contrib import admin

from reports.models import Budget, BudgetAlert, ReportRun, WorkflowValue


@admin.register(WorkflowValue)
class WorkflowValueAdmin(admin.ModelAdmin):
    list_display = ["workflow", "project", "value_usd", "updated_at"]
    list_filter = ["project"]


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["project", "period", "amount_usd", "email_to", "webhook_url"]
    list_filter = ["period"]
    # The signing secret is shown once, on the budgets page that issues it, never here; the webhook
    # URL is set there too, since a new URL gets a new secret (reports.budgets.budget_set).
    exclude = ["webhook_secret"]
    readonly_fields = ["webhook_url"]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ["budget", "period_start", "threshold", "spend_usd", "delivered_at", "attempts", "error"]
    list_filter = ["threshold"]
    # Alerts are the record of what was sent: written by the budget check and delivery only.
    readonly_fields = [f.name for f in BudgetAlert._meta.fields]


@admin.register(ReportRun)
class ReportRunAdmin(admin.ModelAdmin):
    list_display = ["pk", "project", "kind", "status", "progress", "created_at", "finished_at"]
    list_filter = ["kind", "status"]
    readonly_fields = ["result", "error", "started_at", "finished_at"]
