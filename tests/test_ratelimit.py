"""Rate limits (tracer/ratelimit.py): token buckets per key and per project, in this process and in
Redis, through the receiver and the read API; and a real OTLP exporter that is throttled, retries,
and gets every span stored.

The Redis tests use the Redis the settings name (OCTOTRACE_RATE_LIMIT_REDIS_URL, by default the
broker's: CI's database 15), each under a prefix of its own; they are skipped where there is none.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.test import Client
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.factories import BOTH_SCOPES, FakeClock, decode_status, spans_body
from tracer import ingest, otlp, ratelimit
from tracer.models import ApiKey, IngestBatch, Project, Span
from tracer.projects import apikey_create
from tracer.ratelimit import Bucket, LocalLimiter, RedisLimiter

TRACES = "/v1/traces"
METRICS = "/v1/metrics"
LIST = "/api/v1/traces"
EXPORT = "/api/v1/export/traces.csv"
# A valid request holding nothing (one empty ResourceSpans / ResourceMetrics: field 1 of both):
# answered 200 and stored nothing. An empty body would lose its Content-Type in the test client.
NOTHING = b"\n\x00"


def redis_url() -> str:
    url = django_settings.OCTOTRACE_RATE_LIMIT_REDIS_URL
    if not url:
        pytest.skip("no Redis configured (OCTOTRACE_RATE_LIMIT_REDIS_URL / a redis:// CELERY_BROKER_URL)")
    return url


def redis_limiter(clock: FakeClock) -> RedisLimiter:
    # A prefix per test: buckets left by an earlier run (or test) never meet this one's.
    return RedisLimiter(redis_url(), clock=clock, prefix=f"test:{uuid.uuid4().hex}:")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["local", "redis"])
def limiter(request, clock) -> Iterator[ratelimit.Limiter]:
    """Each implementation in turn, installed for the receiver and the API, on the fake clock."""
    installed = LocalLimiter(clock=clock) if request.param == "local" else redis_limiter(clock)
    ratelimit.limiter_install(installed)
    yield installed
    ratelimit.limiter_install(None)


def bucket(name: str = "b", *, rate: float = 2, capacity: float = 2, need: float = 1, cost: float = 1) -> Bucket:
    return Bucket(name=name, rate=rate, capacity=capacity, need=need, cost=cost, reason=name)


def post(client: Client, body: bytes, secret: str, url: str = TRACES):
    return client.post(url, data=body, content_type=otlp.PROTOBUF, HTTP_AUTHORIZATION=f"Bearer {secret}")


def read(client: Client, secret: str, url: str = LIST):
    return client.get(url, HTTP_AUTHORIZATION=f"Bearer {secret}")


def assert_throttled(response, *, retry_after: int, reason: str) -> None:
    assert response.status_code == 429, response.content
    assert response["Retry-After"] == str(retry_after)
    if response["Content-Type"] == otlp.PROTOBUF:
        code, message = decode_status(response.content)
        assert code == 8  # google.rpc.Code RESOURCE_EXHAUSTED
    else:
        message = response.json()["error"]
    assert reason in message, message


# --- The bucket -------------------------------------------------------------------------------


def test_a_bucket_admits_its_capacity_then_says_how_long_to_wait(limiter, clock) -> None:
    assert limiter.take([bucket()]) == (0, -1)
    assert limiter.take([bucket()]) == (0, -1)

    wait, worst = limiter.take([bucket()])

    assert (wait, worst) == (pytest.approx(0.5), 0)


def test_a_bucket_refills_at_its_rate_up_to_its_capacity(limiter, clock) -> None:
    for _ in range(2):
        limiter.take([bucket()])
    clock.advance(0.5)
    assert limiter.take([bucket()]) == (0, -1)
    assert limiter.take([bucket()])[0] > 0

    clock.advance(3600)

    # Full again, but no fuller than its capacity.
    assert [limiter.take([bucket()])[0] for _ in range(3)] == [0, 0, pytest.approx(0.5)]


def test_a_refused_check_takes_from_no_bucket(limiter, clock) -> None:
    limiter.take([bucket("empty", capacity=1, rate=1)])

    wait, worst = limiter.take([bucket("full"), bucket("empty", capacity=1, rate=1)])

    assert (wait, worst) == (pytest.approx(1), 1)
    # "full" gave nothing to the refused check: both of its tokens are still there.
    assert [limiter.take([bucket("full")])[0] for _ in range(3)] == [0, 0, pytest.approx(0.5)]


def test_a_forced_take_goes_into_debt_and_the_next_check_waits_until_it_is_paid(limiter, clock) -> None:
    spans = bucket("spans", rate=10, capacity=10, need=1, cost=0)
    limiter.take([bucket("spans", rate=10, capacity=10, need=0, cost=25)], force=True)

    wait, _ = limiter.take([spans])

    assert wait == pytest.approx(1.6)  # from -15 tokens to 1 at 10 per second
    clock.advance(1.5)
    assert limiter.take([spans])[0] == pytest.approx(0.1)
    clock.advance(0.2)
    assert limiter.take([spans]) == (0, -1)


def test_buckets_of_other_names_are_untouched(limiter, clock) -> None:
    limiter.take([bucket("a", capacity=1, rate=1)])
    assert limiter.take([bucket("a", capacity=1, rate=1)])[0] > 0
    assert limiter.take([bucket("b", capacity=1, rate=1)]) == (0, -1)


def test_the_redis_limiter_lets_requests_through_when_redis_is_down(clock, caplog) -> None:
    down = RedisLimiter("redis://127.0.0.1:1/0", clock=clock)

    with caplog.at_level(logging.WARNING, logger="tracer.ratelimit"):
        results = [down.take([bucket(capacity=1, rate=1)]) for _ in range(3)]

    assert results == [(0, -1)] * 3
    assert "Redis unavailable" in caplog.text


# --- The limits -------------------------------------------------------------------------------


def test_limits_come_from_the_settings_unless_the_project_overrides_them(db, settings) -> None:
    settings.OCTOTRACE_RATE_INGEST_RPS = 100
    settings.OCTOTRACE_RATE_KEY_READ_PER_MIN = 60
    project = Project.objects.create(name="P", slug="p", rate_ingest_rps=7, rate_key_read_per_min=0)

    limits = ratelimit.limits_for(project)

    assert (limits.ingest_rps, limits.key_read_per_min) == (7, 0)
    assert limits.ingest_spans_per_s == django_settings.OCTOTRACE_RATE_INGEST_SPANS_PER_S
    project.rate_ingest_rps = None
    assert ratelimit.limits_for(project).ingest_rps == 100


def test_a_limit_of_zero_is_no_limit(client, project_a, key_a, limiter, settings) -> None:
    settings.OCTOTRACE_RATE_INGEST_RPS = settings.OCTOTRACE_RATE_KEY_INGEST_RPS = 0
    settings.OCTOTRACE_RATE_INGEST_SPANS_PER_S = settings.OCTOTRACE_RATE_KEY_INGEST_SPANS_PER_S = 0

    answers = {post(client, spans_body(50, first=1 + 50 * n), key_a[1]).status_code for n in range(20)}

    assert answers == {200}


# --- The receiver -------------------------------------------------------------------------------


def test_an_ingest_key_over_its_request_rate_gets_429_with_retry_after_and_nothing_is_stored(
    client, project_a, key_a, limiter, clock, settings
) -> None:
    settings.OCTOTRACE_RATE_KEY_INGEST_RPS = 2
    assert [post(client, spans_body(1, first=n), key_a[1]).status_code for n in (1, 2)] == [200, 200]

    response = post(client, spans_body(1, first=3), key_a[1])

    assert_throttled(response, retry_after=1, reason="this key's limit of 2 ingest requests/s")
    assert IngestBatch.objects.count() == 2
    clock.advance(0.5)
    assert post(client, spans_body(1, first=3), key_a[1]).status_code == 200


def test_the_metrics_receiver_shares_the_ingest_request_rate(client, project_a, key_a, limiter, settings) -> None:
    settings.OCTOTRACE_RATE_KEY_INGEST_RPS = 2
    assert post(client, NOTHING, key_a[1], url=METRICS).status_code == 200
    assert post(client, NOTHING, key_a[1], url=TRACES).status_code == 200

    assert_throttled(post(client, NOTHING, key_a[1], url=METRICS), retry_after=1, reason="2 ingest requests/s")


def test_spans_are_counted_from_each_stored_request_and_a_batch_over_the_rate_waits_for_its_debt(
    client, project_a, key_a, limiter, clock
) -> None:
    Project.objects.filter(pk=project_a.pk).update(rate_ingest_spans_per_s=10)

    # A batch bigger than a second's worth is stored (never refused forever), then paid back.
    assert post(client, spans_body(25), key_a[1]).status_code == 200
    response = post(client, spans_body(1, first=100), key_a[1])

    assert_throttled(response, retry_after=2, reason="this project's limit of 10 spans/s")
    assert list(IngestBatch.objects.values_list("span_count", flat=True)) == [25]
    clock.advance(1.5)
    assert post(client, spans_body(1, first=100), key_a[1]).status_code == 429
    clock.advance(0.2)
    assert post(client, spans_body(1, first=100), key_a[1]).status_code == 200


def test_each_key_and_each_project_has_its_own_buckets(client, project_a, project_b, key_a, limiter, settings) -> None:
    settings.OCTOTRACE_RATE_KEY_INGEST_RPS = 2
    settings.OCTOTRACE_RATE_INGEST_RPS = 3
    _, second_a = apikey_create(project=project_a, name="second")
    _, key_of_b = apikey_create(project=project_b)

    # The first key of A spends its own 2; the second key of A gets only the project's last one.
    assert [post(client, NOTHING, key_a[1]).status_code for _ in range(3)] == [200, 200, 429]
    assert post(client, NOTHING, second_a).status_code == 200
    refused = post(client, NOTHING, second_a)
    assert_throttled(refused, retry_after=1, reason="this project's limit of 3 ingest requests/s")
    # Project B's key is not touched by A's traffic.
    assert [post(client, NOTHING, key_of_b).status_code for _ in range(2)] == [200, 200]


def test_a_project_override_raises_or_lowers_the_servers_limits(
    client, project_a, project_b, key_a, key_b, limiter, settings
) -> None:
    settings.OCTOTRACE_RATE_KEY_INGEST_RPS = settings.OCTOTRACE_RATE_INGEST_RPS = 2
    Project.objects.filter(pk=project_a.pk).update(rate_key_ingest_rps=5, rate_ingest_rps=5)
    Project.objects.filter(pk=project_b.pk).update(rate_ingest_rps=1)

    assert [post(client, NOTHING, key_a[1]).status_code for _ in range(6)] == [200] * 5 + [429]
    assert [post(client, NOTHING, key_b[1]).status_code for _ in range(2)] == [200, 429]


# --- The read API ---------------------------------------------------------------------------------


def test_a_read_key_over_its_rate_gets_429_with_retry_after_on_the_json_and_csv_apis(
    client, project_a, limiter, clock, settings
) -> None:
    settings.OCTOTRACE_RATE_KEY_READ_PER_MIN = 2
    _, secret = apikey_create(project=project_a, scopes=(ApiKey.Scope.READ,))
    assert read(client, secret).status_code == 200
    assert read(client, secret, EXPORT).status_code == 200

    assert_throttled(read(client, secret), retry_after=30, reason="this key's limit of 2 read requests/min")
    assert_throttled(read(client, secret, EXPORT), retry_after=30, reason="2 read requests/min")
    clock.advance(31)
    assert read(client, secret).status_code == 200


def test_a_logged_in_reader_is_limited_like_a_key_and_counts_against_the_project(
    client, project_a, bob, key_a, limiter, settings
) -> None:
    settings.OCTOTRACE_RATE_KEY_READ_PER_MIN = 2
    settings.OCTOTRACE_RATE_READ_PER_MIN = 3
    client.force_login(bob)
    url = f"{LIST}?project={project_a.slug}"

    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    assert "your limit of 2 read requests/min" in client.get(url).json()["error"]
    assert read(Client(), key_a[1]).status_code == 200
    assert_throttled(read(Client(), key_a[1]), retry_after=20, reason="this project's limit of 3 read requests/min")


def test_ingest_and_read_limits_do_not_share_buckets(client, project_a, key_a, limiter, settings) -> None:
    settings.OCTOTRACE_RATE_KEY_INGEST_RPS = 1
    settings.OCTOTRACE_RATE_KEY_READ_PER_MIN = 1
    assert post(client, NOTHING, key_a[1]).status_code == 200
    assert read(client, key_a[1]).status_code == 200
    assert post(client, NOTHING, key_a[1]).status_code == 429
    assert read(client, key_a[1]).status_code == 429


# --- A real exporter, throttled -------------------------------------------------------------------


def spans_recorded(count: int) -> list:
    """`count` finished spans of one trace, recorded by the OTel SDK."""
    recorder = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "throttled-agent"}))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("tests.ratelimit")
    with tracer.start_as_current_span("run"):
        for n in range(count - 1):
            with tracer.start_as_current_span(f"step {n}"):
                pass
    provider.shutdown()
    return list(recorder.get_finished_spans())


@pytest.mark.django_db(transaction=True)
def test_the_otlp_exporter_retries_429_after_retry_after_and_every_span_is_stored(live_server, caplog) -> None:
    # The limiter the settings choose (Redis on the production stack and in CI), on the real clock.
    ratelimit.limiter_install(None)
    project = Project.objects.create(name="Throttled", slug="throttled", rate_ingest_spans_per_s=10)
    _, secret = apikey_create(project=project, scopes=BOTH_SCOPES)
    spans = spans_recorded(40)
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}{TRACES}", headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )

    with caplog.at_level(logging.WARNING):
        # Four batches of 10 spans at 10 spans/s: each after the first is refused until its second.
        results = [exporter.export(spans[n : n + 10]) for n in range(0, 40, 10)]
    exporter.shutdown()

    assert results == [SpanExportResult.SUCCESS] * 4
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) >= 3, caplog.text
    batches = list(IngestBatch.objects.filter(project=project).values_list("pk", flat=True))
    assert len(batches) == 4
    for batch_id in batches:
        ingest.batch_process(batch_id=batch_id)
    stored = set(Span.objects.filter(project=project).values_list("span_id", flat=True))
    assert stored == {f"{s.context.span_id:016x}" for s in spans}
    assert len(stored) == 40
