"""When an alert's last delivery attempt began: a project's budget check sends an undelivered
alert again once no delivery has touched it for a while (reports/budgets.py). Nullable, so adding
it rewrites no row."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_move_from_dashboard"),
    ]

    operations = [
        migrations.AddField(
            model_name="budgetalert",
            name="attempted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
