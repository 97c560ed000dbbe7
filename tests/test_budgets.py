"""Budgets and alerts (reports/budgets.py): spend per period, alerts exactly once per
period per threshold (also when two checks race), email through Django's email backend (locmem in
tests), and the webhook against a real HTTP server on a local port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.db import IntegrityError, transaction

from reports import budgets, tasks
from reports.models import Budget, BudgetAlert
from tests import reports_data
from tests.factories import chat, ingest_spans, otlp_span, sid, tid
from tests.reports_data import START_T1, T1, workflow_root
from tracer.models import Span

MONDAY_NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)  # T1's day: $8.25 spent


class Hook:
    """A local HTTP server that records what is POSTed to it and answers `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.headers.append(dict(self.headers))
                self.send_response(hook.status)
                if 300 <= hook.status < 400:
                    self.send_header("Location", "/followed")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/budget"


@pytest.fixture
def hook() -> Iterator[Hook]:
    hook = Hook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def loaded(project_a, alice):
    alice.email = "alice@example.com"
    alice.save(update_fields=["email"])
    reports_data.load(project_a)
    return project_a


def spend_more(project, dollars_in_millions_of_input: int, n: int) -> None:
    """Another trace on T1's day: `dollars_in_millions_of_input` x 1M input tokens at $2 per 1M."""
    trace = tid(100 + n)
    ingest_spans(
        project,
        workflow_root(trace, "extra", START_T1 + n),
        otlp_span(
            sid(2),
            sid(1),
            trace=trace,
            start=START_T1 + n + 1,
            attrs=chat(input=dollars_in_millions_of_input * 1_000_000, output=0),
        ),
    )


def test_spend_is_the_cost_of_the_billed_calls_of_the_period(loaded) -> None:
    daily = budgets.budget_set(project=loaded, period="daily", amount_usd="10")
    monthly = budgets.budget_set(project=loaded, period="monthly", amount_usd="100")
    assert budgets.budget_spend(budget=daily, start=date(2026, 3, 2)) == Decimal("8.25")
    assert budgets.budget_spend(budget=daily, start=date(2026, 3, 3)) == Decimal(0)
    assert budgets.budget_spend(budget=monthly, start=date(2026, 3, 1)) == Decimal("11.75")


def test_a_call_our_own_gpus_served_spends_its_gpu_cost_not_its_api_price(loaded) -> None:
    daily = budgets.budget_set(project=loaded, period="daily", amount_usd="10")
    planner = Span.objects.get(project=loaded, trace_id=T1, billed=True, agent_name="planner")  # $3.00 API
    Span.objects.filter(pk=planner.pk).update(gpu_cost=Decimal("0.40"))
    assert budgets.budget_spend(budget=daily, start=date(2026, 3, 2)) == Decimal("8.25") - 3 + Decimal("0.40")


def test_an_alert_is_sent_once_per_threshold_and_period(loaded) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10")
    first = budgets.budgets_check(now=MONDAY_NOON)  # 82.5%: the 50% alert
    again = budgets.budgets_check(now=MONDAY_NOON)
    assert (first.recorded, first.delivered, again.recorded, again.delivered) == (1, 1, 0, 0)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]  # no addresses given: the owners
    assert "50% of the daily budget" in mail.outbox[0].subject

    spend_more(loaded, 1, 1)  # +$2: 102.5% crosses 90% and 100% at once
    budgets.budgets_check(now=MONDAY_NOON)
    budgets.budgets_check(now=MONDAY_NOON)
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 90, 100]
    assert len(mail.outbox) == 3
    # The next day is a new period with nothing spent yet.
    budgets.budgets_check(now=datetime(2026, 3, 3, 12, tzinfo=UTC))
    assert len(mail.outbox) == 3


def test_the_monthly_budget_has_its_own_thresholds(loaded) -> None:
    budgets.budget_set(project=loaded, period="monthly", amount_usd="20", email_to="fin@example.com; ops@example.com")
    budgets.budgets_check(now=datetime(2026, 3, 31, 23, tzinfo=UTC))  # $11.75 of $20: 58.75%
    (alert,) = BudgetAlert.objects.all()
    assert (alert.period_start, alert.threshold, alert.spend_usd) == (date(2026, 3, 1), 50, Decimal("11.75"))
    assert mail.outbox[0].to == ["fin@example.com", "ops@example.com"]


def test_a_second_insert_of_the_same_threshold_and_period_is_refused_by_the_database(loaded) -> None:
    budget = budgets.budget_set(project=loaded, period="daily", amount_usd="10")
    BudgetAlert.objects.create(budget=budget, period_start=date(2026, 3, 2), threshold=50, spend_usd=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        BudgetAlert.objects.create(budget=budget, period_start=date(2026, 3, 2), threshold=50, spend_usd=1)


def test_two_checks_racing_send_one_alert(loaded) -> None:
    budget = budgets.budget_set(project=loaded, period="daily", amount_usd="10")
    # Both checks saw 82.5%; the one that inserts second learns it lost and sends nothing.
    assert budgets._alert_record(budget=budget, start=date(2026, 3, 2), threshold=50, spend=Decimal("8.25"))
    assert not budgets._alert_record(budget=budget, start=date(2026, 3, 2), threshold=50, spend=Decimal("8.25"))
    (alert,) = BudgetAlert.objects.all()
    # Both try to deliver it: the conditional claim lets one through.
    assert budgets.alert_deliver(alert_id=alert.pk, now=MONDAY_NOON) is True
    assert budgets.alert_deliver(alert_id=alert.pk, now=MONDAY_NOON) is None
    assert len(mail.outbox) == 1


def test_the_webhook_gets_a_json_body(loaded, hook) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    budgets.budgets_check(now=MONDAY_NOON)
    assert hook.bodies == [
        {
            "event": "budget.threshold_reached",
            "project": loaded.slug,
            "period": "daily",
            "period_start": "2026-03-02",
            "threshold_percent": 50,
            "budget_usd": "10.00",
            "spend_usd": "8.250000",
            "currency": "USD",
        }
    ]
    assert hook.headers[0]["Content-Type"] == "application/json"


def test_a_failed_webhook_is_retried_by_the_next_check_without_a_second_email(loaded, hook) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    hook.status = 500
    result = budgets.budgets_check(now=MONDAY_NOON)
    alert = BudgetAlert.objects.get()
    assert (result.failed, alert.delivered_at, alert.attempts) == (1, None, 1)
    assert "500" in alert.error
    hook.status = 204
    assert budgets.budgets_check(now=MONDAY_NOON).delivered == 1
    assert len(hook.bodies) == 2 and len(mail.outbox) == 1
    alert.refresh_from_db()
    assert alert.delivered_at is not None and alert.error == ""


def test_a_webhook_to_an_internal_address_is_refused_outside_local_development(loaded, hook, settings) -> None:
    settings.OCTOTRACE_WEBHOOK_ALLOW_PRIVATE = False
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    assert budgets.budgets_check(now=MONDAY_NOON).failed == 1
    alert = BudgetAlert.objects.get()
    assert "127.0.0.1" in alert.error and "not a public address" in alert.error
    assert hook.bodies == [] and len(mail.outbox) == 1  # the email still went out, once


def test_a_webhook_redirect_is_not_followed(loaded, hook) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    hook.status = 302  # to /followed on the same server: urllib would follow it with a GET
    assert budgets.budgets_check(now=MONDAY_NOON).failed == 1
    assert "302" in BudgetAlert.objects.get().error
    assert len(hook.bodies) == 1


def test_the_periodic_task_checks_the_current_period(project_a) -> None:
    reports_data.load(project_a)  # March 2026: not this month
    now_ns = time.time_ns()
    trace = tid(200)
    ingest_spans(
        project_a,
        workflow_root(trace, "today", now_ns),
        otlp_span(sid(2), sid(1), trace=trace, start=now_ns + 1, attrs=chat(input=1_000_000, output=0)),
    )
    budgets.budget_set(project=project_a, period="monthly", amount_usd="1", email_to="fin@example.com")
    assert tasks.budgets_check.name == "reports.budgets_check"
    assert tasks.budgets_check() == 3  # $2 of $1: 50%, 90% and 100%, one message each
    assert tasks.budgets_check() == 0


def test_the_banner_shows_the_highest_threshold_reached_this_period(loaded) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="8")
    budgets.budgets_check(now=MONDAY_NOON)  # $8.25 of $8: 50, 90 and 100
    (entry,) = budgets.budget_banner(project=loaded, now=MONDAY_NOON)
    assert (entry["period"], entry["threshold"]) == ("daily", 100)
    assert budgets.budget_banner(project=loaded, now=datetime(2026, 3, 3, tzinfo=UTC)) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": "weekly", "amount_usd": "1"}, "daily or monthly"),
        ({"period": "daily", "amount_usd": "0"}, "more than \\$0"),
        ({"period": "daily", "amount_usd": "-3"}, "more than \\$0"),
        ({"period": "daily", "amount_usd": "lots"}, "not an amount"),
        ({"period": "daily", "amount_usd": "Infinity"}, "more than \\$0"),
        ({"period": "daily", "amount_usd": "5", "email_to": "not-an-address"}, "not an email"),
        ({"period": "daily", "amount_usd": "5", "webhook_url": "file:///etc/passwd"}, "http"),
    ],
)
def test_a_bad_budget_is_refused_with_a_reason(project_a, kwargs, message) -> None:
    with pytest.raises(budgets.BadBudget, match=message):
        budgets.budget_set(project=project_a, **kwargs)
    assert not Budget.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_send_each_alert_once(project_a, alice) -> None:
    """Four checks at once, each in its own thread and database connection."""
    from django.db import connections

    reports_data.load(project_a)
    budgets.budget_set(project=project_a, period="daily", amount_usd="8", email_to="fin@example.com")
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def check() -> None:
        try:
            barrier.wait()
            budgets.budgets_check(now=MONDAY_NOON)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    # $8.25 of $8: 50%, 90% and 100%, each recorded and sent exactly once.
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 90, 100]
    assert sorted(m.subject.split(": ")[1].split("%")[0] for m in mail.outbox) == ["100", "50", "90"]
