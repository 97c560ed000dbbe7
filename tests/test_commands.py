"""The management commands, called through call_command with their output captured."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tests.factories import corpus_protobuf
from tracer import batches, ingest, otlp
from tracer.models import (
    ApiKey,
    IngestBatch,
    Membership,
    Project,
    Span,
    Trace,
    hash_key,
)
from tracer.projects import apikey_authenticate

KEY_RE = re.compile(r"otk_[A-Za-z0-9_-]{20,}")
CAPTURE_A = "otel-openai-v2-multiagent-content"
CAPTURE_B = "traceloop-openai-multiagent-content"


TIMING_RE = re.compile(r" in \d+\.\d s \([\d,]+ \w+/s\)")


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def untimed(output: str) -> str:
    """A summary line without its timing ('in 0.3 s (3 batches/s)'), which differs run to run."""
    stripped, found = TIMING_RE.subn("", output.strip())
    assert found == 1, output
    return stripped


def printed_key(output: str) -> str:
    (secret,) = KEY_RE.findall(output)
    return secret


def processed_batch(project: Project, stem: str) -> IngestBatch:
    batch = ingest.batch_accept(project=project, body=corpus_protobuf(stem), content_type=otlp.PROTOBUF)
    assert batch is not None
    ingest.batch_process(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.status == IngestBatch.Status.DONE
    return batch


def span_count(project: Project) -> int:
    return Span.objects.filter(project=project).count()


# --- createproject ---------------------------------------------------------------------------


def test_createproject_prints_a_key_that_authenticates_for_the_new_project(db) -> None:
    output = run("createproject", "Acme Support Bot")

    project = Project.objects.get(slug="acme-support-bot")
    assert project.name == "Acme Support Bot"
    assert "acme-support-bot" in output
    secret = printed_key(output)
    key = apikey_authenticate(secret=secret)
    assert key is not None
    assert key.project == project
    assert key.scopes == ("ingest",)


def test_createproject_stores_only_a_hash_of_the_key(db) -> None:
    secret = printed_key(run("createproject", "Acme"))

    (key,) = ApiKey.objects.all()
    assert key.key_hash == hash_key(secret)
    assert secret not in {key.key_hash, key.prefix, key.name}
    assert len(key.prefix) < len(secret)


def test_createproject_takes_a_slug_and_an_owner(alice) -> None:
    run("createproject", "Acme", "--slug", "acme-prod", "--owner", "alice")

    project = Project.objects.get(slug="acme-prod")
    membership = Membership.objects.get(project=project)
    assert (membership.user, membership.role) == (alice, Membership.Role.OWNER)


def test_createproject_refuses_a_duplicate_slug(project_b) -> None:
    with pytest.raises(CommandError, match=r"a project with the slug 'project-b' already exists"):
        run("createproject", "Another", "--slug", "project-b")
    assert Project.objects.filter(slug="project-b").get().name == "Project B"
    assert not ApiKey.objects.exists()


def test_createproject_names_the_taken_slug_when_it_comes_from_the_name(project_a) -> None:
    # The slug was derived from the name: the message should name the slug that clashed.
    with pytest.raises(CommandError) as raised:
        run("createproject", "Project A")
    assert "already exists" in str(raised.value)
    assert "'project-a'" in str(raised.value)
    assert Project.objects.count() == 1
    assert not ApiKey.objects.exists()


def test_createproject_refuses_an_unknown_owner(db) -> None:
    with pytest.raises(CommandError, match=r"no user named 'nobody'"):
        run("createproject", "Acme", "--owner", "nobody")
    assert not Project.objects.exists()


def test_createproject_refuses_a_name_without_a_slug(db) -> None:
    with pytest.raises(CommandError, match="slug"):
        run("createproject", "!!!")
    assert not Project.objects.exists()


# --- createkey -------------------------------------------------------------------------------


def test_createkey_prints_a_new_working_key(project_a, key_a) -> None:
    output = run("createkey", "project-a", "--name", "ci")

    secret = printed_key(output)
    assert secret != key_a[1]
    key = apikey_authenticate(secret=secret)
    assert key is not None
    assert (key.project, key.name) == (project_a, "ci")
    # The first key still works.
    assert apikey_authenticate(secret=key_a[1]) == key_a[0]
    assert ApiKey.objects.filter(project=project_a).count() == 2


def test_createkey_makes_an_ingest_key_unless_asked_for_a_read_key(project_a) -> None:
    ingest_key = apikey_authenticate(secret=printed_key(run("createkey", "project-a")))
    read_output = run("createkey", "project-a", "--scope", "read")
    read_key = apikey_authenticate(secret=printed_key(read_output))

    assert ingest_key.scopes == ("ingest",)
    assert read_key.scopes == ("read",)
    assert "Read key (shown once" in read_output


def test_createkey_refuses_an_unknown_scope(project_a) -> None:
    with pytest.raises(CommandError, match="invalid choice: 'admin'"):
        run("createkey", "project-a", "--scope", "admin")
    assert not ApiKey.objects.exists()


def test_createkey_refuses_an_unknown_slug(project_a) -> None:
    with pytest.raises(CommandError, match=r"no project with the slug 'nope'"):
        run("createkey", "nope")
    assert not ApiKey.objects.exists()


# --- replay ----------------------------------------------------------------------------------


def test_replay_inline_brings_back_deleted_spans(project_a) -> None:
    batch = processed_batch(project_a, CAPTURE_A)
    trace_before = Trace.objects.filter(project=project_a).values("span_count", "root_span_name").get()
    Span.objects.filter(project=project_a).delete()

    output = run("replay", "--inline")

    assert untimed(output) == "Reprocessed 1 batch(es), 14 span(s)."
    assert span_count(project_a) == 14
    assert Trace.objects.filter(project=project_a).values("span_count", "root_span_name").get() == trace_before
    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == (IngestBatch.Status.DONE, 1)


def test_replay_without_inline_hands_batches_to_the_worker(project_a) -> None:
    batch = processed_batch(project_a, CAPTURE_A)

    output = run("replay")

    assert untimed(output) == "Re-enqueued 1 batch(es) for the worker."
    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == (IngestBatch.Status.PENDING, 0)


def test_replay_only_touches_the_given_project(project_a, project_b) -> None:
    processed_batch(project_a, CAPTURE_A)
    processed_batch(project_b, CAPTURE_B)
    Span.objects.all().delete()

    output = run("replay", "--inline", "--project", "project-b")

    assert untimed(output) == "Reprocessed 1 batch(es), 14 span(s)."
    assert span_count(project_b) == 14
    assert span_count(project_a) == 0


def test_replay_refuses_an_unknown_project(db) -> None:
    with pytest.raises(CommandError, match=r"no project with the slug 'nope'"):
        run("replay", "--project", "nope")


def test_replay_only_touches_batches_in_the_given_status(project_a) -> None:
    done = processed_batch(project_a, CAPTURE_A)
    failed = ingest.batch_accept(project=project_a, body=corpus_protobuf(CAPTURE_B), content_type=otlp.PROTOBUF)
    batches.batch_mark_failed(kind=ingest.BATCHES, batch_id=failed.pk, error="worker crashed")

    output = run("replay", "--inline", "--status", "failed")

    assert untimed(output) == "Reprocessed 1 batch(es), 14 span(s)."
    failed.refresh_from_db()
    assert (failed.status, failed.error) == (IngestBatch.Status.DONE, "")
    assert Span.objects.filter(project=project_a, scope_name="traceloop.tracer").exists()
    assert span_count(project_a) == 28
    assert IngestBatch.objects.get(pk=done.pk).processed_at == done.processed_at


def test_replay_only_touches_batches_received_since(project_a) -> None:
    old = processed_batch(project_a, CAPTURE_A)
    new = processed_batch(project_a, CAPTURE_B)
    IngestBatch.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=3))
    Span.objects.all().delete()
    since = (timezone.now() - timedelta(days=1)).replace(tzinfo=None).isoformat(timespec="seconds")

    output = run("replay", "--inline", "--since", since)

    assert untimed(output) == "Reprocessed 1 batch(es), 14 span(s)."
    assert set(Span.objects.values_list("scope_name", flat=True)) == {
        "traceloop.tracer",
        "opentelemetry.instrumentation.openai.v1",
    }
    assert IngestBatch.objects.get(pk=new.pk).processed_at > new.processed_at
    assert IngestBatch.objects.get(pk=old.pk).processed_at == old.processed_at


def test_replay_accepts_a_date_for_since(project_a) -> None:
    processed_batch(project_a, CAPTURE_A)
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    assert untimed(run("replay", "--inline", "--since", tomorrow)) == "Reprocessed 0 batch(es), 0 span(s)."


def test_replay_resumes_from_the_batch_it_names(project_a) -> None:
    first = processed_batch(project_a, CAPTURE_A)
    second = processed_batch(project_a, CAPTURE_B)
    Span.objects.all().delete()

    output = run("replay", "--inline", "--from-batch", str(second.pk))

    assert untimed(output) == "Reprocessed 1 batch(es), 14 span(s)."
    assert set(Span.objects.values_list("scope_name", flat=True)) == {
        "traceloop.tracer",
        "opentelemetry.instrumentation.openai.v1",
    }
    assert IngestBatch.objects.get(pk=first.pk).processed_at == first.processed_at


def test_replay_interrupted_keeps_the_finished_batches_and_says_where_to_resume(project_a, monkeypatch) -> None:
    first = processed_batch(project_a, CAPTURE_A)
    second = processed_batch(project_a, CAPTURE_B)
    Span.objects.all().delete()
    replay_one = ingest.batch_replay

    def ctrl_c_on_the_second(*, batch_id: int, inline: bool):
        if batch_id == second.pk:
            raise KeyboardInterrupt  # what Ctrl-C raises between two batches
        return replay_one(batch_id=batch_id, inline=inline)

    monkeypatch.setattr(ingest, "batch_replay", ctrl_c_on_the_second)
    with pytest.raises(
        CommandError, match=rf"interrupted after 1 batch\(es\); rerun with --from-batch {first.pk + 1} "
    ):
        run("replay", "--inline")

    assert span_count(project_a) == 14  # the first batch is whole, the second untouched
    monkeypatch.undo()
    assert untimed(run("replay", "--inline", "--from-batch", str(first.pk + 1))).startswith("Reprocessed 1 batch(es)")
    assert span_count(project_a) == 28


def test_replay_draws_a_progress_bar_on_a_terminal(project_a, monkeypatch) -> None:
    processed_batch(project_a, CAPTURE_A)

    class Terminal(StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    run("replay", "--inline")

    assert "replay: 100%" in terminal.getvalue() and "1/1" in terminal.getvalue()


def test_replay_refuses_a_bad_since(db) -> None:
    with pytest.raises(CommandError, match=r"--since 'last tuesday' is not an ISO date"):
        run("replay", "--since", "last tuesday")


def test_replay_skips_batches_whose_body_was_purged(project_a) -> None:
    purged = processed_batch(project_a, CAPTURE_A)
    IngestBatch.objects.filter(pk=purged.pk).update(processed_at=timezone.now() - timedelta(days=30))
    assert batches.batches_purge(kind=ingest.BATCHES) == 1
    Span.objects.all().delete()

    output = run("replay", "--inline")

    assert untimed(output) == "Reprocessed 0 batch(es), 0 span(s)."
    assert span_count(project_a) == 0
    purged.refresh_from_db()
    assert purged.status == IngestBatch.Status.DONE
    assert bytes(purged.body) == b""
