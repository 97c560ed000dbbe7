"""The reports' models now belong to the reports app (reports/migrations/0001): they leave the
dashboard's state only; their tables stay, and are the reports app's from here on."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_reports"),
        ("reports", "0001_move_from_dashboard"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="BudgetAlert"),
                migrations.DeleteModel(name="Budget"),
                migrations.DeleteModel(name="ReportRun"),
                migrations.DeleteModel(name="WorkflowValue"),
            ],
        ),
    ]
