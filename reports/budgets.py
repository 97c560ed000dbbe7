"""Budgets per project (daily and monthly, UTC) and their alerts at 50%, 90% and 100%.

Spend of a period = for each billed call that started in it, its GPU cost when our own GPUs served
it, else its API cost (never both), bucketed by day as the daily export and the Overview charts.

The periodic check (`reports.budgets_check`, see tracer/celery.py) records each threshold crossed
as a BudgetAlert row. Its unique constraint (budget, period, threshold) makes "once per period per
threshold" hold even when two checks run at once: only one insert succeeds. Delivery is claimed
with a conditional UPDATE, sent outside any transaction (email through Django's email backend,
and the budget's webhook with a JSON body), then marked delivered; a failed delivery releases its
claim and is retried by the next check, up to MAX_ATTEMPTS.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from reports import common
from reports.common import date_ns
from reports.models import Budget, BudgetAlert
from tracer.models import Membership, Project, Span

log = logging.getLogger(__name__)

THRESHOLDS = (50, 90, 100)
MAX_ATTEMPTS = 5
# A claim older than this is taken to belong to a check that died mid-delivery.
CLAIM_TIMEOUT = timedelta(minutes=10)
WEBHOOK_TIMEOUT_SECONDS = 10


class BadBudget(ValueError):
    pass


class WebhookRefused(ValueError):
    pass


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx from a webhook is a failure, not a hop to wherever it points (an internal host)."""

    def redirect_request(self, *args, **kwargs) -> None:
        return None


_WEBHOOK_OPENER = urllib.request.build_opener(_NoRedirects)


def webhook_target_check(url: str) -> None:
    """Raise WebhookRefused when the webhook's host resolves to an address that is not public
    (loopback, private, link-local, reserved), unless OCTOTRACE_WEBHOOK_ALLOW_PRIVATE is on."""
    if settings.OCTOTRACE_WEBHOOK_ALLOW_PRIVATE:
        return
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise WebhookRefused(
                f"{parts.hostname} resolves to {address}, which is not a public address "
                "(set OCTOTRACE_WEBHOOK_ALLOW_PRIVATE=1 to allow internal webhooks)"
            )


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


def budget_set(*, project: Project, period: str, amount_usd: Any, email_to: str = "", webhook_url: str = "") -> Budget:
    """Create or change the project's budget for the period. Raises BadBudget on bad input."""
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
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadBudget("the webhook must be an http:// or https:// URL")
    budget, _ = Budget.objects.update_or_create(
        project=project,
        period=period,
        defaults={"amount_usd": amount, "email_to": ", ".join(addresses), "webhook_url": webhook_url},
    )
    return budget


def budget_delete(*, project: Project, period: str) -> None:
    Budget.objects.filter(project=project, period=period).delete()


@dataclass(slots=True)
class CheckResult:
    recorded: int = 0
    delivered: int = 0
    failed: int = 0


def budgets_check(*, now: datetime | None = None) -> CheckResult:
    """Compare every budget's current spend with its thresholds; record and deliver new alerts."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    result = CheckResult()
    for budget in Budget.objects.select_related("project").order_by("pk"):
        start = period_start(period=budget.period, day=today)
        spend = budget_spend(budget=budget, start=start)
        percent = spend * 100 / budget.amount_usd
        for threshold in THRESHOLDS:
            if percent < threshold:
                break
            result.recorded += _alert_record(budget=budget, start=start, threshold=threshold, spend=spend)
    pending = BudgetAlert.objects.filter(delivered_at__isnull=True, attempts__lt=MAX_ATTEMPTS)
    for alert_id in pending.order_by("created_at", "pk").values_list("pk", flat=True):
        outcome = alert_deliver(alert_id=alert_id, now=now)
        if outcome is True:
            result.delivered += 1
        elif outcome is False:
            result.failed += 1
    return result


def _alert_record(*, budget: Budget, start: date, threshold: int, spend: Decimal) -> bool:
    """Insert the alert row; False when it exists (this or a concurrent check recorded it)."""
    if BudgetAlert.objects.filter(budget=budget, period_start=start, threshold=threshold).exists():
        return False
    try:
        with transaction.atomic():
            BudgetAlert.objects.create(budget=budget, period_start=start, threshold=threshold, spend_usd=spend)
    except IntegrityError:
        return False
    return True


def alert_deliver(*, alert_id: int, now: datetime | None = None) -> bool | None:
    """Send one alert if this caller wins its claim. True: sent; False: failed (retried later);
    None: someone else has it, or it is delivered already."""
    now = now or timezone.now()
    claimable = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT)
    won = BudgetAlert.objects.filter(claimable, pk=alert_id, delivered_at__isnull=True).update(claimed_at=now)
    if won != 1:
        return None
    alert = BudgetAlert.objects.select_related("budget__project").get(pk=alert_id)
    try:
        _send(alert)
    except Exception as exc:  # noqa: BLE001 - any failure to deliver is recorded and retried
        log.warning("budget alert %s not delivered: %s", alert_id, exc)
        BudgetAlert.objects.filter(pk=alert_id).update(
            claimed_at=None, attempts=alert.attempts + 1, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        return False
    BudgetAlert.objects.filter(pk=alert_id).update(delivered_at=timezone.now(), attempts=alert.attempts + 1, error="")
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


def _send(alert: BudgetAlert) -> None:
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
        BudgetAlert.objects.filter(pk=alert.pk).update(email_sent_at=timezone.now())
    if budget.webhook_url:
        webhook_target_check(budget.webhook_url)
        request = urllib.request.Request(
            budget.webhook_url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "octotrace-budget-alert"},
            method="POST",
        )
        with _WEBHOOK_OPENER.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            if not 200 <= response.status < 300:
                raise urllib.error.HTTPError(budget.webhook_url, response.status, "not 2xx", response.headers, None)


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
