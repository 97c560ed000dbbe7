"""The audit log (tracer/audit.py): each audited change records one event with its actor, through
the dashboard the way owners make it (or a command); the audit page and its CSV are the owners'.
Alice owns project A, bob is a member of A, charlie has no access; project B is someone else's."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.factories import ingest_spans, otlp_span, sid, tid
from tracer.audit import audit_record
from tracer.models import ApiKey, AuditEvent, ModelPrice, Project
from tracer.projects import apikey_create, membership_remove, membership_save

Action = AuditEvent.Action


def events(project: Project, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(project=project, action=action).order_by("pk"))


def only(project: Project, action: str) -> AuditEvent:
    [event] = events(project, action)
    return event


@pytest.fixture
def owner(client, alice):
    client.force_login(alice)
    return client


# --- Each audited action records one event with its actor ----------------------------------------


def test_creating_a_key_on_the_settings_page_is_audited(owner, project_a, alice) -> None:
    owner.post(f"/p/{project_a.slug}/settings/keys", {"name": "ci"})

    key = ApiKey.objects.get(project=project_a, name="ci")
    event = only(project_a, Action.KEY_CREATE)
    assert (event.actor, event.actor_name, event.target) == (alice, "alice", f"key {key.prefix}… (ci)")


def test_a_key_made_by_a_command_is_audited_without_an_actor(project_a) -> None:
    call_command("createkey", project_a.slug, "--name", "deploy", stdout=io.StringIO())

    event = only(project_a, Action.KEY_CREATE)
    assert (event.actor, event.actor_name) == (None, "")
    assert event.target.endswith("(deploy)")


def test_revoking_a_key_is_audited_once(owner, project_a, alice) -> None:
    key, _ = apikey_create(project=project_a, name="old")
    url = f"/p/{project_a.slug}/settings/keys/{key.pk}/revoke"

    owner.post(url)
    owner.post(url)  # revoked already: nothing changes, nothing recorded

    event = only(project_a, Action.KEY_REVOKE)
    assert (event.actor, event.target) == (alice, f"key {key.prefix}… (old)")


def test_adding_a_member_and_changing_a_role_are_audited(owner, project_a, alice, charlie) -> None:
    owner.post(f"/p/{project_a.slug}/settings/members", {"username": "charlie", "role": "viewer"})
    owner.post(f"/p/{project_a.slug}/settings/members", {"username": "charlie", "role": "member"})
    owner.post(f"/p/{project_a.slug}/settings/members", {"username": "charlie", "role": "member"})  # no change

    added, changed = events(project_a, Action.MEMBER_SAVE)
    assert (added.actor, added.target, added.details) == (
        alice,
        "member charlie",
        {"role": "viewer", "previous_role": None},
    )
    assert changed.details == {"role": "member", "previous_role": "viewer"}


def test_removing_a_member_is_audited(owner, project_a, alice) -> None:
    member_id = project_a.memberships.get(user__username="bob").pk

    owner.post(f"/p/{project_a.slug}/settings/members/{member_id}/remove")

    event = only(project_a, Action.MEMBER_REMOVE)
    assert (event.actor, event.target, event.details) == (alice, "member bob", {"role": "member"})


def test_a_refused_membership_change_records_nothing(project_a, bob, charlie) -> None:
    with pytest.raises(Exception, match="Only an owner"):
        membership_save(project=project_a, actor=bob, username="charlie", role="owner")
    with pytest.raises(Exception, match="Only an owner"):
        membership_remove(project=project_a, actor=bob, member_id=project_a.memberships.first().pk)

    assert not AuditEvent.objects.filter(action__startswith="member.").exists()


def test_adding_and_deleting_a_price_override_are_audited(owner, project_a, alice) -> None:
    owner.post(
        f"/p/{project_a.slug}/prices/add",
        {"model_pattern": "acme-*", "input": "2", "output": "10", "valid_from": "2026-01-01", "note": "deal"},
    )
    price = ModelPrice.objects.get(project=project_a)
    owner.post(f"/p/{project_a.slug}/prices/{price.pk}/delete")

    added = only(project_a, Action.PRICE_CREATE)
    deleted = only(project_a, Action.PRICE_DELETE)
    assert (added.actor, added.target) == (alice, "price */acme-* from 2026-01-01")
    assert added.details["input"] == "2.000000" and added.details["reasoning"] is None
    assert added.details["note"] == "deal"
    assert (deleted.actor, deleted.target, deleted.details) == (alice, added.target, added.details)


def test_setting_changing_and_removing_a_budget_are_audited(owner, project_a, alice) -> None:
    save = f"/p/{project_a.slug}/reports/budgets/save"
    owner.post(save, {"period": "daily", "amount_usd": "5", "webhook_url": "https://hooks.example/t/SECRET"})
    owner.post(save, {"period": "daily", "amount_usd": "7.5"})
    owner.post(f"/p/{project_a.slug}/reports/budgets/delete", {"period": "daily"})
    owner.post(f"/p/{project_a.slug}/reports/budgets/delete", {"period": "daily"})  # none left: nothing recorded

    first, second = events(project_a, Action.BUDGET_SET)
    assert (first.actor, first.target) == (alice, "daily budget")
    assert first.details == {
        "amount_usd": "5.00",
        "previous_amount_usd": None,
        "email_to": "",
        # The host only: the path may carry the webhook's token.
        "webhook_host": "hooks.example",
        # A new webhook URL gets a new signing secret (shown once, never recorded).
        "webhook_secret_issued": True,
    }
    assert (second.details["amount_usd"], second.details["previous_amount_usd"]) == ("7.50", "5.00")
    assert second.details["webhook_secret_issued"] is False
    removed = only(project_a, Action.BUDGET_DELETE)
    assert (removed.actor, removed.details) == (alice, {"amount_usd": "7.50"})


def test_a_deletion_on_request_is_audited(owner, project_a, alice) -> None:
    ingest_spans(project_a, otlp_span(sid(1), trace=tid(1)))

    owner.post(f"/p/{project_a.slug}/traces/{tid(1)}/delete", {"confirm": "yes"})

    event = only(project_a, Action.DATA_DELETE)
    assert (event.actor, event.target) == (alice, f"trace {tid(1)}")
    assert (event.details["traces"], event.details["spans"], event.details["via"]) == (1, 1, "dashboard")


def test_an_unknown_action_is_refused(project_a) -> None:
    with pytest.raises(ValueError, match="unknown audit action"):
        audit_record(project=project_a, actor=None, action="key.steal", target="", details={})


# --- The page and the CSV: owners only ---------------------------------------------------------


def _events_create(project: Project, count: int, *, action: str = Action.KEY_CREATE) -> None:
    now = timezone.now()
    AuditEvent.objects.bulk_create(
        AuditEvent(project=project, action=action, target=f"event {n}", created_at=now + timedelta(seconds=n))
        for n in range(count)
    )


def test_the_audit_page_lists_newest_first_50_a_page(owner, project_a, project_b, django_assert_num_queries) -> None:
    _events_create(project_a, 51)
    _events_create(project_b, 3)

    # Session, user, membership; the base page's project switcher and budget banner; count, page.
    with django_assert_num_queries(7):
        first = owner.get(f"/p/{project_a.slug}/audit/")
    second = owner.get(f"/p/{project_a.slug}/audit/?page=2")

    assert first.status_code == 200
    targets = [e.target for e in first.context["events"].object_list]
    assert targets == [f"event {n}" for n in range(50, 0, -1)]
    assert [e.target for e in second.context["events"].object_list] == ["event 0"]
    assert "51 event(s)" in first.content.decode()


def test_the_audit_page_filters_by_action(owner, project_a) -> None:
    _events_create(project_a, 2)
    _events_create(project_a, 1, action=Action.BUDGET_SET)

    filtered = owner.get(f"/p/{project_a.slug}/audit/?action=budget.set")
    unknown = owner.get(f"/p/{project_a.slug}/audit/?action=nonsense")

    assert [e.action for e in filtered.context["events"].object_list] == [Action.BUDGET_SET]
    assert unknown.context["events"].paginator.count == 3


@pytest.mark.parametrize("url", ["/p/{slug}/audit/", "/p/{slug}/audit.csv"])
def test_the_audit_log_is_for_owners_only(client, project_a, bob, charlie, url: str) -> None:
    url = url.format(slug=project_a.slug)
    client.force_login(bob)
    assert client.get(url).status_code == 403
    client.force_login(charlie)
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def test_the_csv_holds_the_events_newest_first_guarded_against_formulas(owner, project_a, alice) -> None:
    owner.post(f"/p/{project_a.slug}/settings/keys", {"name": "=HYPERLINK(1)"})
    owner.post(f"/p/{project_a.slug}/reports/budgets/save", {"period": "monthly", "amount_usd": "100"})

    response = owner.get(f"/p/{project_a.slug}/audit.csv")
    filtered = owner.get(f"/p/{project_a.slug}/audit.csv?action=budget.set")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{project_a.slug}-audit.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["created_at", "action", "actor", "target", "details"]
    assert [(r[1], r[2]) for r in rows[1:]] == [("budget.set", "alice"), ("key.create", "alice")]
    assert rows[1][4].startswith('{"amount_usd": "100.00"')
    key = ApiKey.objects.get(project=project_a)
    # The key's name starts with "=" inside the target, which starts with "key": no guard needed
    # there; the guard is the CSV writer's (reports/exports.py), tested on a target of its own.
    assert rows[2][3] == f"key {key.prefix}… (=HYPERLINK(1))"
    filtered_rows = list(csv.reader(io.StringIO(b"".join(filtered.streaming_content).decode())))
    assert [r[1] for r in filtered_rows[1:]] == ["budget.set"]


def test_a_csv_cell_that_would_run_as_a_formula_is_quoted(owner, project_a) -> None:
    audit_record(project=project_a, actor=None, action=Action.DATA_DELETE, target="=cmd|' /C calc'!A0")

    response = owner.get(f"/p/{project_a.slug}/audit.csv")

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1][3] == "'=cmd|' /C calc'!A0"
