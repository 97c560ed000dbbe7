"""The reports' models move here from the dashboard app, rows and all.

State only: the tables stay where dashboard/migrations/0001 created them (each model's `db_table`
names its `dashboard_*` table), so nothing is copied, renamed or locked, and a web process of the
previous release keeps working while this one rolls out. dashboard/migrations/0002 removes the
same models from the dashboard's state. The content types (and with them the admin permissions
granted on these models and the admin log) move to the new app label.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

MOVED = ("budget", "budgetalert", "reportrun", "workflowvalue")


def content_types_relabel(apps, schema_editor, *, old: str, new: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    taken = set(content_type.objects.using(db).filter(app_label=new, model__in=MOVED).values_list("model", flat=True))
    content_type.objects.using(db).filter(app_label=old, model__in=set(MOVED) - taken).update(app_label=new)


def content_types_forward(apps, schema_editor) -> None:
    content_types_relabel(apps, schema_editor, old="dashboard", new="reports")


def content_types_backward(apps, schema_editor) -> None:
    content_types_relabel(apps, schema_editor, old="reports", new="dashboard")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        # The tables these models keep.
        ("dashboard", "0001_reports"),
        ("tracer", "0004_load_price_catalog"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Budget",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "period",
                            models.CharField(choices=[("daily", "Daily"), ("monthly", "Monthly")], max_length=8),
                        ),
                        ("amount_usd", models.DecimalField(decimal_places=2, max_digits=14)),
                        ("email_to", models.TextField(blank=True, default="")),
                        ("webhook_url", models.URLField(blank=True, default="", max_length=500)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        (
                            "project",
                            models.ForeignKey(
                                db_index=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="tracer.project",
                            ),
                        ),
                    ],
                    options={"db_table": "dashboard_budget"},
                ),
                migrations.CreateModel(
                    name="BudgetAlert",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("period_start", models.DateField()),
                        ("threshold", models.PositiveSmallIntegerField()),
                        ("spend_usd", models.DecimalField(decimal_places=10, max_digits=20)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("claimed_at", models.DateTimeField(blank=True, null=True)),
                        ("email_sent_at", models.DateTimeField(blank=True, null=True)),
                        ("delivered_at", models.DateTimeField(blank=True, null=True)),
                        ("attempts", models.PositiveSmallIntegerField(default=0)),
                        ("error", models.TextField(blank=True, default="")),
                        (
                            "budget",
                            models.ForeignKey(
                                db_index=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="alerts",
                                to="reports.budget",
                            ),
                        ),
                    ],
                    options={"db_table": "dashboard_budgetalert"},
                ),
                migrations.CreateModel(
                    name="ReportRun",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("kind", models.CharField(choices=[("roi", "Roi")], max_length=12)),
                        ("params", models.JSONField(default=dict)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("running", "Running"),
                                    ("done", "Done"),
                                    ("failed", "Failed"),
                                ],
                                default="pending",
                                max_length=8,
                            ),
                        ),
                        ("progress", models.PositiveSmallIntegerField(default=0)),
                        ("result", models.JSONField(blank=True, null=True)),
                        ("error", models.TextField(blank=True, default="")),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "project",
                            models.ForeignKey(
                                db_index=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="tracer.project",
                            ),
                        ),
                    ],
                    options={"db_table": "dashboard_reportrun"},
                ),
                migrations.CreateModel(
                    name="WorkflowValue",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("workflow", models.TextField()),
                        ("value_usd", models.DecimalField(decimal_places=6, max_digits=14)),
                        ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                        (
                            "project",
                            models.ForeignKey(
                                db_index=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="tracer.project",
                            ),
                        ),
                        (
                            "updated_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={"db_table": "dashboard_workflowvalue"},
                ),
                migrations.AddConstraint(
                    model_name="budget",
                    constraint=models.UniqueConstraint(fields=("project", "period"), name="budget_project_period_uniq"),
                ),
                migrations.AddConstraint(
                    model_name="budget",
                    constraint=models.CheckConstraint(
                        condition=models.Q(("amount_usd__gt", 0)), name="budget_amount_positive"
                    ),
                ),
                migrations.AddIndex(
                    model_name="budgetalert",
                    index=models.Index(
                        condition=models.Q(("delivered_at", None)),
                        fields=["created_at"],
                        name="budgetalert_undelivered_idx",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="budgetalert",
                    constraint=models.UniqueConstraint(
                        fields=("budget", "period_start", "threshold"), name="budgetalert_budget_period_threshold_uniq"
                    ),
                ),
                migrations.AddIndex(
                    model_name="reportrun",
                    index=models.Index(fields=["project", "kind", "-created_at"], name="reportrun_project_kind_idx"),
                ),
                migrations.AddConstraint(
                    model_name="workflowvalue",
                    constraint=models.UniqueConstraint(
                        fields=("project", "workflow"), name="workflowvalue_project_workflow_uniq"
                    ),
                ),
            ],
        ),
        migrations.RunPython(content_types_forward, content_types_backward),
    ]
