"""Budgets and alerts (reports/budgets.py, reports/tasks.py): spend per period; the periodic check
fans out (one check per project, one delivery task per alert, no network call in a check); alerts
exactly once per period per threshold (also when checks and deliveries race); email through
Django's email backend (locmem in tests) and the webhook against a real HTTP server on a local
port; retries of failed deliveries. Beat, the broker and the workers are stood in for by `queue`:
a fixed clock, and messages recorded at the broker boundary (the Celery app's send_task) then run
as a worker would."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.db import IntegrityError, connections, transaction

from reports import budgets, tasks, webhooks
from reports.models import Budget, BudgetAlert
from tests import reports_data
from tests.factories import chat, ingest_spans, otlp_span, sid, tid
from tests.reports_data import START_T1, T1, workflow_root
from tracer.celery import app as celery_app
from tracer.models import Span

MONDAY_NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)  # T1's day: $8.25 spent
LATER = MONDAY_NOON + budgets.RESEND_AFTER + timedelta(minutes=1)


class Hook:
    """A local HTTP server that records what is POSTed to it and answers `statuses` in turn, then
    `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.status = 200
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.headers.append(dict(self.headers))
                status = hook.statuses.pop(0) if hook.statuses else hook.status
                self.send_response(status)
                if 300 <= status < 400:
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


class Queue:
    """Beat, the queue and the workers, on a clock the test sets (`now`, read by the reports'
    code through reports.common.utc_now). Messages sent to the queue are recorded; `work` runs
    them as a worker would, sending the on-commit enqueues of each task when it ends."""

    def __init__(self, capture_on_commit) -> None:
        self.now = MONDAY_NOON
        self.messages: list[tuple[str, list]] = []
        self.capture_on_commit = capture_on_commit

    def send_task(self, name: str, args=None, countdown=None, **options) -> None:
        self.messages.append((name, list(args or [])))

    def work(self) -> list[BaseException]:
        """Run every message, and those they send, in order; the errors the tasks raised."""
        errors: list[BaseException] = []
        while self.messages:
            name, args = self.messages.pop(0)
            try:
                with self.capture_on_commit(execute=True):
                    celery_app.tasks[name](*args)
            except Exception as exc:  # noqa: BLE001 - a worker logs it; the test reads them
                errors.append(exc)
        return errors

    def tick(self, now: datetime | None = None) -> list[BaseException]:
        """Beat sends the periodic check at `now`; the workers run it and all that follows."""
        self.now = now or self.now
        self.send_task(budgets.BUDGETS_CHECK_TASK)
        return self.work()


@pytest.fixture
def queue(monkeypatch, django_capture_on_commit_callbacks) -> Queue:
    queue = Queue(django_capture_on_commit_callbacks)
    monkeypatch.setattr(celery_app, "send_task", queue.send_task)
    monkeypatch.setattr("reports.common.utc_now", lambda: queue.now)
    return queue


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


def test_the_beat_task_only_sends_one_check_per_project_with_a_budget(loaded, project_b, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10")
    budgets.budget_set(project=loaded, period="monthly", amount_usd="100")
    budgets.budget_set(project=project_b, period="daily", amount_usd="1")
    assert tasks.budgets_check.name == budgets.BUDGETS_CHECK_TASK == "reports.budgets_check"
    assert tasks.budgets_check() == 2
    # The beat's instant travels with each check, so all of them check the same period.
    assert sorted(queue.messages) == [
        (budgets.BUDGET_CHECK_TASK, [loaded.pk, MONDAY_NOON.isoformat()]),
        (budgets.BUDGET_CHECK_TASK, [project_b.pk, MONDAY_NOON.isoformat()]),
    ]
    assert BudgetAlert.objects.count() == 0 and mail.outbox == []  # nothing checked or sent in the sweep


def test_a_projects_check_records_alerts_and_enqueues_one_delivery_each_without_sending(loaded, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="8")  # $8.25 of $8: 50, 90 and 100%
    with queue.capture_on_commit(execute=True):
        assert tasks.budget_check_project(loaded.pk, MONDAY_NOON.isoformat()) == 3
    alerts = list(BudgetAlert.objects.order_by("threshold").values_list("pk", flat=True))
    assert queue.messages == [(budgets.ALERT_DELIVER_TASK, [pk]) for pk in alerts]
    assert mail.outbox == [] and not BudgetAlert.objects.filter(attempts__gt=0).exists()
    assert queue.work() == []
    assert len(mail.outbox) == 3 and BudgetAlert.objects.filter(delivered_at__isnull=False).count() == 3


def test_an_alert_is_sent_once_per_threshold_and_period(loaded, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10")
    assert queue.tick() == []  # 82.5%: the 50% alert
    assert queue.tick() == []
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]  # no addresses given: the owners
    assert "50% of the daily budget" in mail.outbox[0].subject

    spend_more(loaded, 1, 1)  # +$2: 102.5% crosses 90% and 100% at once
    queue.tick()
    queue.tick(LATER)  # later the same day: nothing new, nothing to send again
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 90, 100]
    assert len(mail.outbox) == 3
    # The next day is a new period with nothing spent yet.
    queue.tick(datetime(2026, 3, 3, 12, tzinfo=UTC))
    assert len(mail.outbox) == 3


def test_the_monthly_budget_has_its_own_thresholds(loaded, queue) -> None:
    budgets.budget_set(project=loaded, period="monthly", amount_usd="20", email_to="fin@example.com; ops@example.com")
    queue.tick(datetime(2026, 3, 31, 23, tzinfo=UTC))  # $11.75 of $20: 58.75%
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
    # Both checks saw 82.5%; the one that inserts second learns it lost and enqueues nothing.
    alert = budgets.alert_record(budget=budget, start=date(2026, 3, 2), threshold=50, spend=Decimal("8.25"))
    assert alert is not None
    assert budgets.alert_record(budget=budget, start=date(2026, 3, 2), threshold=50, spend=Decimal("8.25")) is None
    # Two deliveries of it (a message delivered twice): the conditional claim lets one through.
    assert budgets.alert_deliver(alert_id=alert.pk, now=MONDAY_NOON) is True
    assert budgets.alert_deliver(alert_id=alert.pk, now=MONDAY_NOON) is None
    assert len(mail.outbox) == 1


def test_the_webhook_gets_a_json_body(loaded, hook, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    assert queue.tick() == []
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


def test_the_delivery_task_retries_a_webhook_error_without_a_second_email(loaded, hook, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    budgets.budget_check_project(project_id=loaded.pk, now=MONDAY_NOON)
    alert = BudgetAlert.objects.get()
    hook.statuses = [500, 503]
    # Celery's eager mode runs the task's automatic retries one after the other.
    result = tasks.alert_deliver.apply(args=[alert.pk])
    assert result.successful() and result.result is True
    alert.refresh_from_db()
    assert (alert.attempts, alert.error) == (3, "") and alert.delivered_at is not None
    assert len(hook.bodies) == 3 and len(mail.outbox) == 1


def test_a_webhook_that_keeps_failing_stops_after_the_last_attempt_with_the_error_shown(
    loaded, hook, queue, client, alice
) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    budgets.budget_check_project(project_id=loaded.pk, now=MONDAY_NOON)
    alert = BudgetAlert.objects.get()
    hook.status = 500
    result = tasks.alert_deliver.apply(args=[alert.pk])
    assert result.failed()
    alert.refresh_from_db()
    assert (alert.attempts, alert.delivered_at) == (budgets.MAX_ATTEMPTS, None) and "500" in alert.error
    assert len(hook.bodies) == budgets.MAX_ATTEMPTS and len(mail.outbox) == 1
    # Its attempts are spent: later checks do not send it again.
    assert queue.tick(LATER) == [] and len(hook.bodies) == budgets.MAX_ATTEMPTS
    client.force_login(alice)
    page = client.get(f"/p/{loaded.slug}/reports/budgets/").content.decode()
    assert f"not yet ({budgets.MAX_ATTEMPTS} attempt(s)): WebhookUnavailable" in page


def test_a_failed_delivery_is_sent_again_by_a_later_check_without_a_second_email(loaded, hook, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    hook.status = 404  # the webhook says no: not a network error, so the task does not retry it
    (error,) = queue.tick()
    assert isinstance(error, webhooks.WebhookRejected)
    alert = BudgetAlert.objects.get()
    assert (alert.delivered_at, alert.attempts) == (None, 1) and "404" in alert.error
    hook.status = 204
    queue.tick(MONDAY_NOON + timedelta(minutes=5))  # too soon: a retry may be on its way
    assert len(hook.bodies) == 1
    assert queue.tick(LATER) == []
    assert len(hook.bodies) == 2 and len(mail.outbox) == 1
    alert.refresh_from_db()
    assert alert.delivered_at is not None and (alert.attempts, alert.error) == (2, "")


def test_a_lost_delivery_message_is_sent_again_by_a_later_check(loaded, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10")
    with queue.capture_on_commit(execute=True):
        budgets.budget_check_project(project_id=loaded.pk, now=MONDAY_NOON)
    queue.messages.clear()  # the broker lost the delivery message
    queue.tick(MONDAY_NOON + timedelta(minutes=5))  # recorded 5 minutes ago: maybe still queued
    assert mail.outbox == []
    assert queue.tick(LATER) == []
    assert len(mail.outbox) == 1 and BudgetAlert.objects.get().delivered_at == LATER


def test_a_webhook_to_an_internal_address_is_refused_outside_local_development(loaded, hook, queue, settings) -> None:
    settings.OCTOTRACE_WEBHOOK_ALLOW_PRIVATE = False
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    (error,) = queue.tick()
    assert isinstance(error, webhooks.WebhookRefused)
    alert = BudgetAlert.objects.get()
    assert "127.0.0.1" in alert.error and "not a public address" in alert.error
    assert hook.bodies == [] and len(mail.outbox) == 1  # the email still went out, once


def test_a_webhook_redirect_is_not_followed(loaded, hook, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="10", webhook_url=hook.url)
    hook.status = 302  # to /followed on the same server: a client that follows redirects would GET it
    (error,) = queue.tick()
    assert isinstance(error, webhooks.WebhookRejected)
    assert "302" in BudgetAlert.objects.get().error
    assert len(hook.bodies) == 1


def test_the_banner_shows_the_highest_threshold_reached_this_period(loaded, queue) -> None:
    budgets.budget_set(project=loaded, period="daily", amount_usd="8")
    queue.tick()  # $8.25 of $8: 50, 90 and 100
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


def _at_once(n: int, work) -> list[BaseException]:
    """Run `work` in n threads, each with its own database connection, released together."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's assertion
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_and_deliveries_send_each_alert_once(project_a, alice, queue) -> None:
    """Four checks of the project at once, then four deliveries of each alert they enqueued at once."""
    reports_data.load(project_a)
    budgets.budget_set(project=project_a, period="daily", amount_usd="8", email_to="fin@example.com")
    queue.messages.clear()  # the ingest's own
    assert _at_once(4, lambda: budgets.budget_check_project(project_id=project_a.pk, now=MONDAY_NOON)) == []
    # $8.25 of $8: 50%, 90% and 100%, each recorded once, and its delivery enqueued once.
    alerts = sorted(BudgetAlert.objects.values_list("threshold", "pk"))
    assert [threshold for threshold, _ in alerts] == [50, 90, 100]
    assert sorted(queue.messages) == sorted((budgets.ALERT_DELIVER_TASK, [pk]) for _, pk in alerts)

    def deliver_all() -> None:
        for _, pk in alerts:
            budgets.alert_deliver(alert_id=pk, now=MONDAY_NOON)

    assert _at_once(4, deliver_all) == []
    assert sorted(m.subject.split(": ")[1].split("%")[0] for m in mail.outbox) == ["100", "50", "90"]
    assert BudgetAlert.objects.filter(delivered_at__isnull=False, attempts=1).count() == 3
