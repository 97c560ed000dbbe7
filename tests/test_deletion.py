"""Deletion on request (tracer/deletion.py): a trace, a session or everything of one end user, with
the spans, the trace rows and the raw batches kept for replay; through the service, the API
(`DELETE /api/v1/traces|sessions|users/<id>`) and the dashboard. Alice owns project A, bob is a
member of A, charlie has no access; project B belongs to someone else."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from django.test import Client

from tests.factories import ingest_spans, otlp_body, otlp_span, sid, tid
from tracer import ingest, otlp
from tracer.deletion import DeletionBusy, DeletionInvalid, data_delete
from tracer.models import ApiKey, AuditEvent, IngestBatch, Project, Span, Trace
from tracer.projects import apikey_create

T1, T2, T3 = tid(1), tid(2), tid(3)


def stored(project: Project) -> dict[str, set[str]]:
    """trace id -> its stored span ids."""
    out: dict[str, set[str]] = {}
    for trace_id, span_id in Span.objects.filter(project=project).values_list("trace_id", "span_id"):
        out.setdefault(trace_id, set()).add(span_id)
    return out


def trace_rows(project: Project) -> set[str]:
    return set(Trace.objects.filter(project=project).values_list("trace_id", flat=True))


def batch_spans(batch: IngestBatch) -> set[tuple[str, str]]:
    """(trace id, span id) of every span a stored batch's body holds, decoded as the worker does."""
    data = otlp.decompress(bytes(batch.body), encoding=batch.content_encoding, limit=10**8)
    request = otlp.parse_request(data, content_type=batch.content_type)
    return {(r.trace_id, r.span_id) for r in otlp.iter_spans(request) if not isinstance(r, str)}


def accept(project: Project, body: bytes, **kwargs: Any) -> IngestBatch:
    batch = ingest.batch_accept(
        project=project, body=body, content_type=kwargs.pop("content_type", otlp.PROTOBUF), **kwargs
    )
    assert batch is not None
    return batch


@pytest.fixture
def data(project_a, project_b) -> dict[str, Any]:
    """Project A: a batch of T1 alone, a batch mixing T1 and T2, a batch of T3. Project B: its own
    T1 (same id, another tenant). T1 is session s1 and user u1, T2 session s2 and user u2, T3
    session s1 (on a child span) and user 42 (an integer, on its resource)."""
    ingest_spans(
        project_a,
        otlp_span(sid(1), trace=T1, name="run one", attrs={"session.id": "s1"}),
        otlp_span(sid(2), sid(1), trace=T1, attrs={"user.id": "u1"}),
    )
    ingest_spans(
        project_a,
        otlp_span(sid(3), sid(1), trace=T1, name="late child"),
        otlp_span(sid(1), trace=T2, name="run two", attrs={"gen_ai.conversation.id": "s2", "enduser.id": "u2"}),
        otlp_span(sid(2), sid(1), trace=T2),
    )
    ingest_spans(project_b, otlp_span(sid(1), trace=T1, attrs={"session.id": "s1", "user.id": "u1"}))
    body = otlp_body(
        otlp_span(sid(1), trace=T3, name="run three"),
        otlp_span(sid(2), sid(1), trace=T3, attrs={"session.id": "s1"}),
    )
    # T3's user is named on its resource, as an integer: rewrite the body's resource attributes.
    request = otlp.parse_request(body, content_type=otlp.PROTOBUF)
    user = request.resource_spans[0].resource.attributes.add()
    user.key, user.value.int_value = "enduser.id", 42
    third = accept(project_a, request.SerializeToString())
    ingest.batch_process(batch_id=third.pk)
    only_t1, mixed = IngestBatch.objects.filter(project=project_a).order_by("pk")[:2]
    return {"only_t1": only_t1, "mixed": mixed, "third": third}


# --- The service --------------------------------------------------------------------------------


def test_deleting_a_trace_deletes_its_spans_trace_row_and_raw_spans(project_a, project_b, alice, data) -> None:
    result = data_delete(project=project_a, actor=alice, trace_id=T1.upper())

    assert (result.traces, result.spans, result.batches_deleted, result.batches_rewritten) == (1, 3, 1, 1)
    assert stored(project_a) == {T2: {sid(1), sid(2)}, T3: {sid(1), sid(2)}}
    assert trace_rows(project_a) == {T2, T3}
    # The batch of T1 alone is gone; the mixed one is rewritten and still decodes, with T2 only.
    assert not IngestBatch.objects.filter(pk=data["only_t1"].pk).exists()
    mixed = IngestBatch.objects.get(pk=data["mixed"].pk)
    assert batch_spans(mixed) == {(T2, sid(1)), (T2, sid(2))}
    assert (mixed.content_type, mixed.content_encoding, mixed.span_count, mixed.trace_count) == (
        otlp.PROTOBUF,
        "",
        2,
        1,
    )
    assert mixed.body_size == len(bytes(mixed.body))
    assert batch_spans(IngestBatch.objects.get(pk=data["third"].pk)) == {(T3, sid(1)), (T3, sid(2))}
    # Another project's trace with the same id is untouched.
    assert stored(project_b) == {T1: {sid(1)}}
    assert trace_rows(project_b) == {T1}


def test_a_rewritten_batch_replays_without_the_deleted_spans(project_a, alice, data) -> None:
    data_delete(project=project_a, actor=alice, trace_id=T1)

    result = ingest.batch_replay(batch_id=data["mixed"].pk, inline=True)

    assert result is not None and result.spans == 2
    assert set(stored(project_a)) == {T2, T3}
    assert Trace.objects.get(project=project_a, trace_id=T2).span_count == 2


def test_deleting_a_session_deletes_every_trace_with_a_span_of_it(project_a, project_b, alice, data) -> None:
    result = data_delete(project=project_a, actor=alice, session_id="s1")

    # T1 (session on its root) and T3 (session on a child span only) go; T2 (session s2) stays.
    assert (result.traces, result.spans) == (2, 5)
    assert stored(project_a) == {T2: {sid(1), sid(2)}}
    assert trace_rows(project_a) == {T2}
    assert not IngestBatch.objects.filter(pk__in=[data["only_t1"].pk, data["third"].pk]).exists()
    assert batch_spans(IngestBatch.objects.get(pk=data["mixed"].pk)) == {(T2, sid(1)), (T2, sid(2))}
    assert stored(project_b) == {T1: {sid(1)}}


@pytest.mark.parametrize(
    ("user_id", "left"),
    [
        pytest.param("u1", {T2, T3}, id="user.id on a child span"),
        pytest.param("u2", {T1, T3}, id="enduser.id on the root"),
        pytest.param("42", {T1, T2}, id="an integer id on the resource"),
    ],
)
def test_deleting_a_user_deletes_every_trace_with_a_span_naming_them(
    project_a, project_b, alice, data, user_id: str, left: set[str]
) -> None:
    result = data_delete(project=project_a, actor=alice, user_id=user_id)

    assert result.traces == 1
    assert set(stored(project_a)) == left
    assert trace_rows(project_a) == left
    remaining = set().union(*(batch_spans(b) for b in IngestBatch.objects.filter(project=project_a)))
    assert {trace_id for trace_id, _ in remaining} == left
    assert stored(project_b) == {T1: {sid(1)}}


def test_a_user_with_no_data_deletes_nothing(project_a, alice, data) -> None:
    before = (stored(project_a), trace_rows(project_a), IngestBatch.objects.count())

    result = data_delete(project=project_a, actor=alice, user_id="nobody")

    assert result.as_dict() == {
        "traces": 0,
        "spans": 0,
        "batches_rewritten": 0,
        "batches_deleted": 0,
        "batches_unreadable": 0,
    }
    assert (stored(project_a), trace_rows(project_a), IngestBatch.objects.count()) == before


def test_a_gzipped_json_batch_is_rewritten_as_plain_protobuf(project_a, alice) -> None:
    spans = [
        {"traceId": trace, "spanId": sid(1), "name": "run", "startTimeUnixNano": "1000", "endTimeUnixNano": "2000"}
        for trace in (T1, T2)
    ]
    document = {"resourceSpans": [{"scopeSpans": [{"scope": {"name": "tests"}, "spans": spans}]}]}
    batch = accept(
        project_a, gzip.compress(json.dumps(document).encode()), content_type=otlp.JSON, content_encoding="gzip"
    )
    ingest.batch_process(batch_id=batch.pk)

    data_delete(project=project_a, actor=alice, trace_id=T1)

    batch.refresh_from_db()
    assert (batch.content_type, batch.content_encoding) == (otlp.PROTOBUF, "")
    assert batch_spans(batch) == {(T2, sid(1))}
    assert set(stored(project_a)) == {T2}


def test_a_pending_batch_is_rewritten_before_a_worker_reads_it(project_a, alice) -> None:
    """Spans not processed yet: a session found only in a pending batch is deleted there, and
    processing the batch afterwards stores the other trace only."""
    ingest_spans(project_a, otlp_span(sid(9), trace=T1))
    pending = accept(
        project_a,
        otlp_body(otlp_span(sid(1), trace=T1, attrs={"session.id": "late"}), otlp_span(sid(1), trace=T2)),
    )

    result = data_delete(project=project_a, actor=alice, session_id="late")

    # T1's processed span goes too: the session was found in the pending batch.
    assert (result.traces, result.spans, result.batches_deleted, result.batches_rewritten) == (1, 1, 1, 1)
    outcome = ingest.batch_process(batch_id=pending.pk)
    assert outcome is not None and outcome.spans == 1
    assert stored(project_a) == {T2: {sid(1)}}


def test_a_batch_being_processed_makes_the_deletion_wait(project_a, alice, data) -> None:
    IngestBatch.objects.filter(pk=data["mixed"].pk).update(status=IngestBatch.Status.PROCESSING)
    before = (stored(project_a), IngestBatch.objects.count())

    with pytest.raises(DeletionBusy, match="being processed"):
        data_delete(project=project_a, actor=alice, trace_id=T1)

    assert (stored(project_a), IngestBatch.objects.count()) == before
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DATA_DELETE).exists()


def test_an_undecodable_body_is_left_and_counted(project_a, alice, data) -> None:
    IngestBatch.objects.create(project=project_a, body=b"not protobuf", content_type=otlp.PROTOBUF, status="failed")

    result = data_delete(project=project_a, actor=alice, trace_id=T1)

    assert result.batches_unreadable == 1
    assert result.traces == 1


def test_gpu_attribution_goes_with_the_spans(project_a, alice, gpu_data) -> None:
    assert Span.objects.filter(project=project_a, gpu_seconds__isnull=False).exists()

    data_delete(project=project_a, actor=alice, trace_id=gpu_data)

    assert not Span.objects.filter(project=project_a, trace_id=gpu_data).exists()
    assert not Trace.objects.filter(project=project_a, trace_id=gpu_data).exists()


@pytest.mark.parametrize(
    "chosen",
    [{}, {"trace_id": T1, "session_id": "s1"}, {"trace_id": "xyz"}, {"session_id": "  "}, {"user_id": "u" * 201}],
)
def test_a_request_must_name_exactly_one_valid_id(project_a, alice, chosen: dict[str, str]) -> None:
    with pytest.raises(DeletionInvalid):
        data_delete(project=project_a, actor=alice, **chosen)


def test_a_deletion_is_audited_with_its_counts(project_a, alice, data) -> None:
    data_delete(project=project_a, actor=alice, session_id="s2", via="dashboard")

    event = AuditEvent.objects.get(project=project_a, action=AuditEvent.Action.DATA_DELETE)
    assert (event.actor, event.actor_name, event.target) == (alice, "alice", "session s2")
    assert event.details == {
        "traces": 1,
        "spans": 2,
        "batches_rewritten": 1,
        "batches_deleted": 0,
        "batches_unreadable": 0,
        "via": "dashboard",
    }


# --- The API ------------------------------------------------------------------------------------


def bearer(key: tuple[ApiKey, str]) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key[1]}"}


@pytest.mark.parametrize(
    ("url", "left"),
    [
        pytest.param(f"/api/v1/traces/{T1}", {T2, T3}, id="trace"),
        pytest.param("/api/v1/sessions/s2", {T1, T3}, id="session"),
        pytest.param("/api/v1/users/u1", {T2, T3}, id="user"),
    ],
)
def test_an_owner_deletes_in_the_project_through_the_api(
    client, project_a, project_b, alice, data, url: str, left: set[str]
) -> None:
    client.force_login(alice)
    response = client.delete(f"{url}?project={project_a.slug}")

    assert response.status_code == 200, response.content
    assert response.json()["deleted"]["traces"] == 1
    assert set(stored(project_a)) == left
    assert stored(project_b) == {T1: {sid(1)}}
    event = AuditEvent.objects.get(action=AuditEvent.Action.DATA_DELETE)
    assert event.actor == alice
    assert event.details["via"] == "API"


@pytest.mark.parametrize("scopes", [("read",), ("ingest",), ("ingest", "read")], ids=["read", "ingest", "legacy"])
def test_no_api_key_deletes(client, project_a, data, scopes: tuple[str, ...]) -> None:
    key = apikey_create(project=project_a, scopes=scopes)

    response = client.delete(f"/api/v1/traces/{T1}", **bearer(key))

    assert response.status_code == 403
    assert set(stored(project_a)) == {T1, T2, T3}
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DATA_DELETE).exists()


def test_an_owner_deletes_through_the_api_with_a_csrf_token(project_a, alice, data) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    url = f"/api/v1/users/u2?project={project_a.slug}"

    refused = client.delete(url)
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    response = client.delete(url, HTTP_X_CSRFTOKEN=token)

    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert response.status_code == 200, response.content
    assert set(stored(project_a)) == {T1, T3}
    assert AuditEvent.objects.get(action=AuditEvent.Action.DATA_DELETE).actor == alice


@pytest.mark.parametrize(("who", "status"), [("bob", 403), ("charlie", 404)])
def test_only_an_owner_of_the_project_deletes_through_the_api(
    client, project_a, bob, charlie, data, who: str, status: int
) -> None:
    client.force_login({"bob": bob, "charlie": charlie}[who])

    response = client.delete(f"/api/v1/traces/{T1}?project={project_a.slug}")

    assert response.status_code == status
    assert set(stored(project_a)) == {T1, T2, T3}
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DATA_DELETE).exists()


def test_the_api_answers_401_400_409_and_still_reads_a_trace(client, project_a, alice, data) -> None:
    assert client.delete(f"/api/v1/traces/{T1}").status_code == 401
    client.force_login(alice)
    query = f"?project={project_a.slug}"
    assert client.delete(f"/api/v1/traces/not-an-id{query}").status_code == 400
    assert client.get(f"/api/v1/traces/{T1}{query}").json()["trace"]["trace_id"] == T1
    assert client.post(f"/api/v1/sessions/s1{query}").status_code == 405
    IngestBatch.objects.filter(pk=data["mixed"].pk).update(status=IngestBatch.Status.PROCESSING)

    busy = client.delete(f"/api/v1/traces/{T1}{query}")

    assert busy.status_code == 409 and busy["Retry-After"] == "5"
    assert set(stored(project_a)) == {T1, T2, T3}


def test_a_session_id_may_hold_a_slash(client, project_a, alice) -> None:
    ingest_spans(project_a, otlp_span(sid(1), trace=T1, attrs={"session.id": "chat/7"}))
    client.force_login(alice)

    response = client.delete(f"/api/v1/sessions/chat/7?project={project_a.slug}")

    assert response.status_code == 200 and response.json()["deleted"]["traces"] == 1


# --- The dashboard ------------------------------------------------------------------------------


def test_an_owner_deletes_from_the_settings_form(client, project_a, alice, data) -> None:
    client.force_login(alice)
    url = f"/p/{project_a.slug}/settings/delete"

    unconfirmed = client.post(url, {"kind": "session", "value": "s1"}, follow=True)
    response = client.post(url, {"kind": "session", "value": "s1", "confirm": "yes"}, follow=True)

    assert "Tick the confirmation" in unconfirmed.content.decode()
    assert response.status_code == 200
    assert "Deleted for session s1: 2 trace(s), 5 span(s)" in response.content.decode()
    assert set(stored(project_a)) == {T2}
    assert AuditEvent.objects.get(action=AuditEvent.Action.DATA_DELETE).details["via"] == "dashboard"


def test_the_settings_page_shows_the_delete_form_and_the_audit_link(client, project_a, alice) -> None:
    client.force_login(alice)

    page = client.get(f"/p/{project_a.slug}/settings/").content.decode()

    assert 'data-section="delete-data"' in page
    assert f'href="/p/{project_a.slug}/audit/"' in page


def test_an_owner_deletes_a_trace_from_its_page(client, project_a, alice, data) -> None:
    client.force_login(alice)
    page = client.get(f"/p/{project_a.slug}/traces/{T1}/").content.decode()

    response = client.post(f"/p/{project_a.slug}/traces/{T1}/delete", {"confirm": "yes"})

    assert 'data-form="trace-delete"' in page
    assert response.status_code == 302 and response["Location"] == f"/p/{project_a.slug}/traces/"
    assert set(stored(project_a)) == {T2, T3}


def test_a_member_sees_no_delete_button_and_cannot_delete(client, project_a, bob, data) -> None:
    client.force_login(bob)
    page = client.get(f"/p/{project_a.slug}/traces/{T1}/").content.decode()

    by_button = client.post(f"/p/{project_a.slug}/traces/{T1}/delete", {"confirm": "yes"})
    by_form = client.post(f"/p/{project_a.slug}/settings/delete", {"kind": "trace", "value": T1, "confirm": "yes"})

    assert 'data-form="trace-delete"' not in page
    assert (by_button.status_code, by_form.status_code) == (403, 403)
    assert set(stored(project_a)) == {T1, T2, T3}


def test_a_member_of_another_project_gets_404(client, project_a, project_b, charlie, data) -> None:
    project_b.memberships.create(user=charlie, role="owner")
    client.force_login(charlie)

    by_button = client.post(f"/p/{project_a.slug}/traces/{T1}/delete", {"confirm": "yes"})
    by_form = client.post(f"/p/{project_a.slug}/settings/delete", {"kind": "trace", "value": T1, "confirm": "yes"})

    assert (by_button.status_code, by_form.status_code) == (404, 404)
    assert set(stored(project_a)) == {T1, T2, T3}
