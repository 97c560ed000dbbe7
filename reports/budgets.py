"""Budgets per project (daily and monthly, UTC) and their alerts at 50%, 90% and 100%.

Spend of a period = for each billed call that started in it, its GPU cost when our own GPUs served
it, else its API cost (never both), bucketed by day as the daily export and the Overview charts.

The periodic work fans out (tasks in reports/tasks.py, schedule in tracer/celery.py):
- `reports.budgets_check` (beat) only selects the projects that have a budget and sends one
  `reports.budget_check_project` per project, all for the same instant;
- `reports.budget_check_project` compares the project's spend with each budget and records each
  threshold crossed as a BudgetAlert row. Its unique constraint (budget, period, threshold) makes
  "once per period per threshold" hold even when two checks run at once: only one insert
  succeeds, and only the check that inserted the row enqueues its delivery;
- `reports.alert_deliver` (one task per alert) claims the alert with a conditional UPDATE, sends
  it (email through Django's email backend, and the budget's webhook with a signed JSON body,
  reports/webhooks.py) outside any transaction, then marks it delivered. A failure is recorded
  on the alert (attempts, error); network errors are retried by the task with a growing wait,
  and an alert no delivery has touched for RESEND_AFTER (its message was lost, or its retries
  are spent) is enqueued again by its project's next check, up to MAX_ATTEMPTS attempts in all.
No SMTP or HTTP call happens in a check.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce

from reports import common
from reports.common import date_ns
from reports.models import Budget, BudgetAlert
from reports.webhooks import WebhookRefused, webhook_post, webhook_secret_new, webhook_url_check
from tracer.audit import Action, audit_record
from tracer.celery import task_enqueue, task_send
from tracer.models import Membership, Project, Span

log = logging.getLogger(__name__)

BUDGETS_CHECK_TASK = "reports.budgets_check"
BUDGET_CHECK_TASK = "reports.budget_check_project"
ALERT_DELIVER_TASK = "reports.alert_deliver"

THRESHOLDS = (50, 90, 100)
MAX_ATTEMPTS = 5
# A claim older than this is taken to belong to a delivery that died mid-send.
CLAIM_TIMEOUT = timedelta(minutes=10)
# An undelivered alert that no delivery touched for this long lost its message (the broker was
# down when it was enqueued) or spent its task's retries: its project's next check enqueues it
# again. Longer than the delivery task's retries take in all (reports/tasks.py), so a retry that
# is waiting is not doubled.
RESEND_AFTER = timedelta(minutes=15)


class BadBudget(ValueError):
    pass


def period_start(*, period: str, day: date) -> date:
    return day if period == Budget.Period.DAILY else day.replace(day=1)


def period_end(*, period: str, start: date) -> date:
    if period == Budget.Period.DAILY:
        return start + timedelta(days=1)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def budget_spend(*, budget: Budget, start: date) -> Decimal:
    """What the project spent in the period that begins on `start`: the cost of its billed calls
    that started in the period: the GPU cost of calls our own GPUs served, the API price of the
    others. Decimal, $0 when nothing."""
    end = period_end(period=budget.period, start=start)
    billed = Span.objects.filter(
        project_id=budget.project_id,
        billed=True,
        start_time_unix_nano__gte=date_ns(start),
        start_time_unix_nano__lt=date_ns(end),
    )
    # A call served by our own GPUs costs its GPU time; any other call its API price. Never both.
    return billed.aggregate(spend=Sum(Coalesce("gpu_cost", "cost")))["spend"] or Decimal(0)


def budget_set(
    *,
    project: Project,
    period: str,
    amount_usd: Any,
    email_to: str = "",
    webhook_url: str = "",
    actor: AbstractBaseUser | None = None,
) -> Budget:
    """Create or change the project's budget for the period (audited). Raises BadBudget on bad input.

    A webhook URL that is set or changed gets a new signing secret (a new receiver, a new key),
    also on the returned budget's `new_webhook_secret`, to show once; an unchanged URL keeps its
    secret; no webhook, no secret."""
    if period not in Budget.Period.values:
        raise BadBudget("period must be daily or monthly")
    try:
        amount = Decimal(str(amount_usd).strip())
    except InvalidOperation:
        raise BadBudget(f"{amount_usd!r} is not an amount of dollars") from None
    if not amount.is_finite() or amount <= 0:
        raise BadBudget("the budget must be more than $0")
    amount = amount.quantize(Decimal("0.01"))
    if amount >= Decimal("1e12"):
        raise BadBudget("the budget is too large")
    addresses = [a.strip() for a in email_to.replace(";", ",").split(",") if a.strip()]
    for address in addresses:
        if "@" not in address or any(c.isspace() for c in address):
            raise BadBudget(f"{address!r} is not an email address")
    webhook_url = webhook_url.strip()
    if webhook_url:
        try:
            webhook_url_check(webhook_url)
        except WebhookRefused as exc:
            raise BadBudget(str(exc)) from None
    with transaction.atomic():
        # Locked, so that two saves at once cannot each show a secret only one of them stored.
        existing = Budget.objects.select_for_update().filter(project=project, period=period).first()
        new_secret = None
        secret = ""
        if webhook_url:
            if existing is not None and existing.webhook_url == webhook_url and existing.webhook_secret:
                secret = existing.webhook_secret
            else:
                secret = new_secret = webhook_secret_new()
        budget, _ = Budget.objects.update_or_create(
            project=project,
            period=period,
            defaults={
                "amount_usd": amount,
                "email_to": ", ".join(addresses),
                "webhook_url": webhook_url,
                "webhook_secret": secret,
            },
        )
        audit_record(
            project=project,
            actor=actor,
            action=Action.BUDGET_SET,
            target=f"{period} budget",
            details={
                "amount_usd": str(amount),
                "previous_amount_usd": None if existing is None else str(existing.amount_usd),
                "email_to": budget.email_to,
                # The host only: a webhook URL may carry a token in its path or query.
                "webhook_host": urlsplit(webhook_url).hostname or "",
                "webhook_secret_issued": new_secret is not None,
            },
        )
    budget.new_webhook_secret = new_secret
    return budget


def budget_webhook_secret_rotate(*, project: Project, period: str, actor: AbstractBaseUser | None = None) -> str:
    """Give the budget's webhook a new signing secret (audited); the new secret, to show once. The
    old one stops working at once: alerts sent from now on are signed with the new one."""
    secret = webhook_secret_new()
    with transaction.atomic():
        with_webhook = Budget.objects.filter(project=project, period=period).exclude(webhook_url="")
        if with_webhook.update(webhook_secret=secret) != 1:
            raise BadBudget(f"the project has no {period} budget with a webhook")
        audit_record(
            project=project,
            actor=actor,
            action=Action.BUDGET_SET,
            target=f"{period} budget",
            details={"webhook_secret_issued": True},
        )
    return secret


def budget_delete(*, project: Project, period: str, actor: AbstractBaseUser | None = None) -> None:
    """Remove the project's budget for the period, if any (audited)."""
    with transaction.atomic():
        budget = Budget.objects.filter(project=project, period=period).first()
        if budget is None:
            return
        budget.delete()
        audit_record(
            project=project,
            actor=actor,
            action=Action.BUDGET_DELETE,
            target=f"{period} budget",
            details={"amount_usd": str(budget.amount_usd)},
        )


def budgets_sweep(*, now: datetime | None = None) -> int:
    """The periodic check's fan-out: one `budget_check_project` task per project with a budget, all
    for the period of `now`. Reads no spend and sends nothing. Returns how many tasks the broker
    took (one it refused is logged; the next sweep sends it again)."""
    now = now or common.utc_now()
    # Served by the (project, period) unique index.
    project_ids = Budget.objects.order_by("project_id").values_list("project_id", flat=True).distinct()
    return sum(task_send(BUDGET_CHECK_TASK, project_id, now.isoformat()) for project_id in project_ids)


@dataclass(slots=True)
class CheckResult:
    # Alerts this check recorded (it enqueued their delivery).
    recorded: int = 0
    # Earlier alerts of the project whose delivery it enqueued again.
    resent: int = 0


def budget_check_project(*, project_id: int, now: datetime | None = None) -> CheckResult:
    """Compare each budget of the project with its thresholds in the period of `now`; record each
    threshold newly reached and enqueue its delivery; enqueue again the deliveries that were lost."""
    now = now or common.utc_now()
    today = now.astimezone(UTC).date()
    result = CheckResult()
    for budget in Budget.objects.filter(project_id=project_id).order_by("pk"):
        start = period_start(period=budget.period, day=today)
        spend = budget_spend(budget=budget, start=start)
        percent = spend * 100 / budget.amount_usd
        for threshold in THRESHOLDS:
            if percent < threshold:
                break
            alert = alert_record(budget=budget, start=start, threshold=threshold, spend=spend, now=now)
            if alert is not None:
                result.recorded += 1
                task_enqueue(ALERT_DELIVER_TASK, alert.pk)
    lost = (
        BudgetAlert.objects.filter(budget__project_id=project_id, delivered_at__isnull=True, attempts__lt=MAX_ATTEMPTS)
        .annotate(touched_at=Coalesce("attempted_at", "created_at"))
        .filter(touched_at__lt=now - RESEND_AFTER)
    )
    for alert_id in lost.order_by("created_at", "pk").values_list("pk", flat=True):
        task_enqueue(ALERT_DELIVER_TASK, alert_id)
        result.resent += 1
    return result


def alert_record(
    *, budget: Budget, start: date, threshold: int, spend: Decimal, now: datetime | None = None
) -> BudgetAlert | None:
    """Insert the alert row; None when it exists (this or a concurrent check recorded it). The
    insert is the claim on "this threshold, this period": only its winner enqueues the delivery."""
    if BudgetAlert.objects.filter(budget=budget, period_start=start, threshold=threshold).exists():
        return None
    try:
        with transaction.atomic():
            return BudgetAlert.objects.create(
                budget=budget,
                period_start=start,
                threshold=threshold,
                spend_usd=spend,
                created_at=now or common.utc_now(),
            )
    except IntegrityError:
        return None


def alert_deliver(*, alert_id: int, now: datetime | None = None) -> bool | None:
    """Send one alert if this caller wins its claim. True: sent. None: nothing to do (another
    delivery holds it, it went out already, or its attempts are spent). A failure is recorded on
    the alert (attempts, error, claim released) and raised, so that the delivery task retries the
    transient ones (network errors)."""
    now = now or common.utc_now()
    claimable = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT)
    won = BudgetAlert.objects.filter(
        claimable, pk=alert_id, delivered_at__isnull=True, attempts__lt=MAX_ATTEMPTS
    ).update(claimed_at=now, attempted_at=now, attempts=F("attempts") + 1)
    if won != 1:
        return None
    alert = BudgetAlert.objects.select_related("budget__project").get(pk=alert_id)
    try:
        _send(alert, now=now)
    except Exception as exc:
        log.warning("budget alert %s not delivered (attempt %s): %s", alert_id, alert.attempts, exc)
        BudgetAlert.objects.filter(pk=alert_id).update(claimed_at=None, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    BudgetAlert.objects.filter(pk=alert_id).update(delivered_at=now, error="")
    return True


def alert_payload(alert: BudgetAlert) -> dict[str, Any]:
    budget = alert.budget
    return {
        "event": "budget.threshold_reached",
        "project": budget.project.slug,
        "period": budget.period,
        "period_start": alert.period_start.isoformat(),
        "threshold_percent": alert.threshold,
        "budget_usd": str(budget.amount_usd),
        "spend_usd": str(alert.spend_usd.quantize(Decimal("0.000001"))),
        "currency": "USD",
    }


def _recipients(budget: Budget) -> list[str]:
    if budget.email_to:
        return [a.strip() for a in budget.email_to.split(",") if a.strip()]
    owners = Membership.objects.filter(project_id=budget.project_id, role=Membership.Role.OWNER).exclude(user__email="")
    return list(owners.values_list("user__email", flat=True))


def _send(alert: BudgetAlert, *, now: datetime) -> None:
    budget = alert.budget
    payload = alert_payload(alert)
    recipients = _recipients(budget)
    if recipients and alert.email_sent_at is None:
        subject = (
            f"[Octotrace] {budget.project.name}: {alert.threshold}% of the {budget.period} budget "
            f"(${budget.amount_usd}) reached"
        )
        body = (
            f"Project {budget.project.name} has spent ${payload['spend_usd']} in the {budget.period} period "
            f"starting {payload['period_start']} (UTC): {alert.threshold}% or more "
            f"of its ${budget.amount_usd} budget.\n"
        )
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
        BudgetAlert.objects.filter(pk=alert.pk).update(email_sent_at=now)
    if budget.webhook_url:
        webhook_post(
            url=budget.webhook_url,
            body=json.dumps(payload).encode(),
            secret=budget.webhook_secret,
            now=now,
            user_agent="octotrace-budget-alert",
        )


def budgets_status(*, project: Project, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each budget of the project with its current period's start, spend and share used."""
    today = (now or common.utc_now()).astimezone(UTC).date()
    rows = []
    for budget in Budget.objects.filter(project=project).order_by("period"):
        start = period_start(period=budget.period, day=today)
        spend = budget_spend(budget=budget, start=start)
        rows.append({"budget": budget, "start": start, "spend": spend, "share": spend / budget.amount_usd})
    return rows


def alerts_recent(*, project: Project, limit: int = 20) -> list[BudgetAlert]:
    """The project's latest alerts with their delivery state, newest first."""
    alerts = BudgetAlert.objects.filter(budget__project=project).select_related("budget").order_by("-created_at")
    return list(alerts[:limit])


def budget_banner(*, project: Project, now: datetime | None = None) -> list[dict[str, Any]]:
    """The highest threshold each budget of the project reached in its current period, from the
    recorded alerts (one query, so every page can show it)."""
    today = (now or common.utc_now()).astimezone(UTC).date()
    current = Q(budget__period=Budget.Period.DAILY, period_start=today) | Q(
        budget__period=Budget.Period.MONTHLY, period_start=today.replace(day=1)
    )
    alerts = (
        BudgetAlert.objects.filter(current, budget__project=project)
        .select_related("budget")
        .order_by("budget__period", "-threshold")
    )
    out: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        out.setdefault(
            alert.budget.period,
            {
                "period": alert.budget.period,
                "threshold": alert.threshold,
                "budget_usd": alert.budget.amount_usd,
                "spend_usd": alert.spend_usd,
            },
        )
    return list(out.values())
