"""A signing secret per budget webhook (reports/webhooks.py). A budget that has a webhook already
gets one here, so every POST from now on is signed; its owner sees it by rotating it on the
budgets page (a secret is shown only when issued)."""

import secrets

from django.db import migrations, models


def secrets_issue(apps, schema_editor) -> None:
    Budget = apps.get_model("reports", "Budget")
    for budget in Budget.objects.exclude(webhook_url="").filter(webhook_secret="").only("pk"):
        # The same form as reports.webhooks.webhook_secret_new, frozen here as migrations are.
        Budget.objects.filter(pk=budget.pk).update(webhook_secret="whsec_" + secrets.token_urlsafe(32))


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0002_budgetalert_attempted_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="budget",
            name="webhook_secret",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(secrets_issue, migrations.RunPython.noop),
    ]
