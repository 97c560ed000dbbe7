"""The reports' models moved from the dashboard app to the reports app (reports/migrations/0001,
dashboard/migrations/0002): a database migrated before the move keeps its budgets, alerts, report
runs and workflow values, and the admin permissions granted on them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from reports.models import Budget, BudgetAlert, ReportRun, WorkflowValue

BEFORE_THE_MOVE = [("dashboard", "0001_reports"), ("reports", None)]


@pytest.mark.django_db(transaction=True)
def test_a_database_migrated_before_the_move_keeps_its_rows() -> None:
    executor = MigrationExecutor(connection)
    # The state of every app after the move is undone (tracer and auth stay at their latest).
    old = executor.migrate(BEFORE_THE_MOVE).apps

    # The rows as the release before the move wrote them, through its own (historical) models.
    user = old.get_model("auth", "User").objects.create(username="alice")
    project = old.get_model("tracer", "Project").objects.create(name="Project A", slug="project-a")
    budget = old.get_model("dashboard", "Budget").objects.create(
        project_id=project.pk, period="daily", amount_usd=Decimal("10.00"), email_to="fin@example.com"
    )
    alert = old.get_model("dashboard", "BudgetAlert").objects.create(
        budget_id=budget.pk, period_start=date(2026, 3, 2), threshold=90, spend_usd=Decimal("9.12"), attempts=2
    )
    run = old.get_model("dashboard", "ReportRun").objects.create(
        project_id=project.pk, kind="roi", status="done", progress=100, result={"totals": {}}, created_by_id=user.pk
    )
    value = old.get_model("dashboard", "WorkflowValue").objects.create(
        project_id=project.pk, workflow="invoke_workflow research", value_usd=Decimal("12.5"), updated_by_id=user.pk
    )
    # Content types as that release had them (undoing the move gave them back their old label),
    # with a permission granted on one.
    old_type = old.get_model("contenttypes", "ContentType")
    old_type.objects.filter(app_label="reports").delete()
    budget_type, _ = old_type.objects.get_or_create(app_label="dashboard", model="budget")
    permission, _ = old.get_model("auth", "Permission").objects.get_or_create(
        content_type_id=budget_type.pk, codename="change_budget", defaults={"name": "Can change budget"}
    )
    old.get_model("auth", "User").objects.get(pk=user.pk).user_permissions.add(permission.pk)

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    ContentType.objects.clear_cache()
    moved = Budget.objects.get()
    assert (moved.pk, moved.project_id, moved.period, moved.amount_usd) == (budget.pk, project.pk, "daily", Decimal(10))
    assert moved.email_to == "fin@example.com"
    moved_alert = BudgetAlert.objects.get()
    assert (moved_alert.pk, moved_alert.budget, moved_alert.threshold, moved_alert.attempts) == (alert.pk, moved, 90, 2)
    assert moved_alert.spend_usd == Decimal("9.12")
    moved_run = ReportRun.objects.get()
    assert (moved_run.pk, moved_run.status, moved_run.result, moved_run.created_by_id) == (
        run.pk,
        ReportRun.Status.DONE,
        {"totals": {}},
        user.pk,
    )
    moved_value = WorkflowValue.objects.get()
    assert (moved_value.pk, moved_value.workflow, moved_value.value_usd) == (value.pk, value.workflow, Decimal("12.5"))
    # The permission follows the model to its new app label.
    assert ContentType.objects.get_for_model(Budget).pk == budget_type.pk
    assert Permission.objects.get(pk=permission.pk).content_type.app_label == "reports"
    assert list(Permission.objects.get(pk=permission.pk).user_set.values_list("pk", flat=True)) == [user.pk]
    # New rows still get fresh ids after the old ones.
    assert Budget.objects.create(project_id=project.pk, period="monthly", amount_usd=5).pk > budget.pk


BEFORE_SIGNING = [("reports", "0002_budgetalert_attempted_at")]


@pytest.mark.django_db(transaction=True)
def test_a_budget_whose_webhook_was_set_before_signing_gets_a_secret() -> None:
    """reports/migrations/0003: every webhook POST is signed from the upgrade on."""
    executor = MigrationExecutor(connection)
    old = executor.migrate(BEFORE_SIGNING).apps
    project = old.get_model("tracer", "Project").objects.create(name="Project A", slug="project-a")
    old_budget = old.get_model("reports", "Budget")
    old_budget.objects.create(
        project_id=project.pk, period="daily", amount_usd=Decimal(10), webhook_url="https://hooks.example.com/a"
    )
    old_budget.objects.create(project_id=project.pk, period="monthly", amount_usd=Decimal(100))

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    daily, monthly = Budget.objects.order_by("period")
    assert daily.webhook_secret.startswith("whsec_") and len(daily.webhook_secret) > 40
    assert monthly.webhook_secret == ""
