"""Membership changes through their services (tracer/projects.py). Alice owns project A, bob is a
member of A, charlie has no access; dave owns project B."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from tests.factories import project_with_members, user_create
from tracer.models import Membership, Project
from tracer.projects import (
    MembershipForbidden,
    MembershipRefused,
    RoleInvalid,
    membership_remove,
    membership_save,
)

OWNER, MEMBER, VIEWER = Membership.Role.OWNER, Membership.Role.MEMBER, Membership.Role.VIEWER


@pytest.fixture
def dave(db):
    return user_create("dave")


@pytest.fixture
def project_d(dave):
    return project_with_members("Project D", owner=dave)


def roles(project: Project) -> dict[str, str]:
    return dict(Membership.objects.filter(project=project).values_list("user__username", "role"))


# --- Adding and changing ---------------------------------------------------------------------


@pytest.mark.parametrize("role", [OWNER, MEMBER, VIEWER])
def test_an_owner_adds_a_user_with_any_role(project_a, alice, charlie, role: str) -> None:
    membership = membership_save(project=project_a, actor=alice, username="charlie", role=role)

    assert (membership.project, membership.user, membership.role) == (project_a, charlie, role)
    assert roles(project_a) == {"alice": OWNER, "bob": MEMBER, "charlie": role}


def test_saving_a_member_again_changes_their_role_instead_of_adding_them_twice(project_a, alice) -> None:
    before = Membership.objects.get(project=project_a, user__username="bob")

    after = membership_save(project=project_a, actor=alice, username=" bob ", role=VIEWER)

    assert after.pk == before.pk
    assert roles(project_a) == {"alice": OWNER, "bob": VIEWER}


def test_an_owner_may_keep_their_own_role(project_a, alice) -> None:
    membership_save(project=project_a, actor=alice, username="alice", role=OWNER)
    assert roles(project_a)["alice"] == OWNER


def test_an_owner_may_lower_another_owner(project_a, alice, dave) -> None:
    membership_save(project=project_a, actor=alice, username="dave", role=OWNER)

    membership_save(project=project_a, actor=alice, username="dave", role=MEMBER)

    assert roles(project_a) == {"alice": OWNER, "bob": MEMBER, "dave": MEMBER}


@pytest.mark.parametrize("role", ["", "admin", "Owner"])
def test_an_unknown_role_is_refused(project_a, alice, role: str) -> None:
    with pytest.raises(RoleInvalid, match="role must be one of owner, member, viewer"):
        membership_save(project=project_a, actor=alice, username="bob", role=role)
    assert roles(project_a) == {"alice": OWNER, "bob": MEMBER}


def test_an_unknown_user_is_refused(project_a, alice) -> None:
    with pytest.raises(MembershipRefused, match="No user named 'nobody'."):
        membership_save(project=project_a, actor=alice, username="nobody", role=MEMBER)
    assert roles(project_a) == {"alice": OWNER, "bob": MEMBER}


@pytest.mark.parametrize("role", [MEMBER, VIEWER])
def test_an_owner_cannot_lower_their_own_role(project_a, alice, dave, role: str) -> None:
    # Even with another owner: that owner can do it.
    membership_save(project=project_a, actor=alice, username="dave", role=OWNER)

    with pytest.raises(MembershipRefused, match="You cannot lower your own role; another owner can."):
        membership_save(project=project_a, actor=alice, username="alice", role=role)

    assert roles(project_a)["alice"] == OWNER
    membership_save(project=project_a, actor=dave, username="alice", role=role)
    assert roles(project_a) == {"alice": role, "bob": MEMBER, "dave": OWNER}


def test_the_last_owner_cannot_lower_their_role(project_a, alice) -> None:
    with pytest.raises(MembershipRefused):
        membership_save(project=project_a, actor=alice, username="alice", role=MEMBER)
    assert list(Membership.objects.filter(project=project_a, role=OWNER).values_list("user__username", flat=True)) == [
        "alice"
    ]


@pytest.mark.parametrize("actor_name", ["bob", "charlie", "dave"], ids=["member", "no-access", "other-owner"])
@pytest.mark.parametrize("role", [OWNER, MEMBER, VIEWER])
def test_only_an_owner_of_the_project_changes_its_members(
    request, project_a, project_d, actor_name: str, role: str
) -> None:
    actor = request.getfixturevalue(actor_name)

    # Not even themselves: bob cannot make himself an owner.
    for username in ("charlie", "bob", actor_name):
        with pytest.raises(MembershipForbidden, match="Only an owner of Project A manages its members."):
            membership_save(project=project_a, actor=actor, username=username, role=role)

    assert roles(project_a) == {"alice": OWNER, "bob": MEMBER}


def test_a_lowered_owner_can_no_longer_change_members(project_a, alice, dave) -> None:
    membership_save(project=project_a, actor=alice, username="dave", role=OWNER)
    membership_save(project=project_a, actor=alice, username="dave", role=MEMBER)

    with pytest.raises(MembershipForbidden):
        membership_save(project=project_a, actor=dave, username="alice", role=MEMBER)
    assert roles(project_a)["alice"] == OWNER


# --- Removing --------------------------------------------------------------------------------


def test_an_owner_removes_a_member(project_a, alice, bob) -> None:
    membership = Membership.objects.get(project=project_a, user=bob)

    removed = membership_remove(project=project_a, actor=alice, member_id=membership.pk)

    assert removed.user == bob
    assert roles(project_a) == {"alice": OWNER}


def test_an_owner_removes_another_owner(project_a, alice, dave) -> None:
    theirs = membership_save(project=project_a, actor=alice, username="dave", role=OWNER)

    membership_remove(project=project_a, actor=alice, member_id=theirs.pk)

    assert roles(project_a) == {"alice": OWNER, "bob": MEMBER}


def test_an_owner_cannot_remove_themselves_even_the_last_one(project_a, alice) -> None:
    own = Membership.objects.get(project=project_a, user=alice)

    with pytest.raises(MembershipRefused, match="You cannot remove yourself."):
        membership_remove(project=project_a, actor=alice, member_id=own.pk)

    assert roles(project_a) == {"alice": OWNER, "bob": MEMBER}


def test_a_membership_of_another_project_is_not_found(project_a, project_d, alice, dave) -> None:
    theirs = Membership.objects.get(project=project_d, user=dave)

    with pytest.raises(Membership.DoesNotExist):
        membership_remove(project=project_a, actor=alice, member_id=theirs.pk)
    with pytest.raises(Membership.DoesNotExist):
        membership_remove(project=project_a, actor=alice, member_id=theirs.pk + 1000)

    assert roles(project_d) == {"dave": OWNER}


@pytest.mark.parametrize("actor_name", ["bob", "charlie", "dave"], ids=["member", "no-access", "other-owner"])
def test_only_an_owner_of_the_project_removes_its_members(request, project_a, project_d, actor_name: str) -> None:
    actor = request.getfixturevalue(actor_name)

    for membership in Membership.objects.filter(project=project_a):
        with pytest.raises(MembershipForbidden):
            membership_remove(project=project_a, actor=actor, member_id=membership.pk)

    assert roles(project_a) == {"alice": OWNER, "bob": MEMBER}


# --- Two owners at once ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_owners_lowering_each_other_at_once_leave_the_project_an_owner(project_a, alice, dave) -> None:
    """Both demotions wait on the project's lock, which this test holds until both wait; then the
    first runs and the second finds its actor no longer an owner."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite runs one writer at a time anyway)")
    membership_save(project=project_a, actor=alice, username="dave", role=OWNER)
    outcomes: dict[str, str] = {}

    def lower(actor, username: str) -> None:
        try:
            membership_save(project=project_a, actor=actor, username=username, role=MEMBER)
            outcomes[actor.username] = "lowered"
        except MembershipForbidden:
            outcomes[actor.username] = "forbidden"
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes[actor.username] = repr(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=lower, args=(alice, "dave")),
        threading.Thread(target=lower, args=(dave, "alice")),
    ]
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project_a.pk)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        with connection.cursor() as cursor:
            while True:
                # Statistics views are a snapshot taken once per transaction: take a new one.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0] == 2:
                    break
                assert time.monotonic() < deadline, "both demotions should be waiting on the project's lock"
                time.sleep(0.01)
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes.values()) == ["forbidden", "lowered"]
    owners = Membership.objects.filter(project=project_a, role=OWNER).values_list("user__username", flat=True)
    assert len(owners) == 1
