"""API key scopes (tracer/projects.py): ingest unless asked, legacy keys keep both and split in two.

What each scope may reach, endpoint by endpoint, is tests/test_security_matrix.py.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.operations import AddField

from tests.factories import BOTH_SCOPES
from tracer.models import ApiKey
from tracer.projects import apikey_authenticate, apikey_create, apikey_revoke, apikey_split


def test_a_new_key_has_the_ingest_scope_unless_asked(project_a) -> None:
    ingest_key, _ = apikey_create(project=project_a)
    read_key, _ = apikey_create(project=project_a, scopes=(ApiKey.Scope.READ,))

    assert (ingest_key.scopes, ingest_key.scope_label) == (("ingest",), "ingest")
    assert (read_key.scopes, read_key.scope_label) == (("read",), "read")
    assert not ingest_key.is_legacy and not read_key.is_legacy


@pytest.mark.parametrize("scopes", [(), ("admin",), ("read", "write")])
def test_a_key_needs_known_scopes(project_a, scopes) -> None:
    with pytest.raises(ValueError, match="scopes must be some of ingest, read"):
        apikey_create(project=project_a, scopes=scopes)
    assert not ApiKey.objects.exists()


def test_splitting_a_legacy_key_revokes_it_and_makes_one_key_of_each_scope(project_a) -> None:
    legacy, legacy_secret = apikey_create(project=project_a, name="ci", scopes=BOTH_SCOPES)
    assert legacy.scope_label == "legacy: ingest + read"

    split = apikey_split(key=legacy)

    assert apikey_authenticate(secret=legacy_secret) is None
    assert apikey_authenticate(secret=split.ingest_secret) == split.ingest
    assert apikey_authenticate(secret=split.read_secret) == split.read
    assert (split.ingest.scopes, split.read.scopes) == (("ingest",), ("read",))
    assert split.ingest.name == split.read.name == "ci"
    assert split.ingest.project == split.read.project == project_a


@pytest.mark.parametrize("scopes", [("ingest",), ("read",)])
def test_only_an_active_legacy_key_can_be_split(project_a, scopes) -> None:
    key, _ = apikey_create(project=project_a, scopes=scopes)
    revoked, _ = apikey_create(project=project_a, scopes=BOTH_SCOPES)
    apikey_revoke(key=revoked)

    for refused in (key, revoked):
        with pytest.raises(ValueError, match="is not an active legacy key"):
            apikey_split(key=refused)
    assert ApiKey.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_keys_made_before_scopes_keep_both_and_are_shown_as_legacy() -> None:
    executor = MigrationExecutor(connection)
    # The migration that brought scopes, found by what it does (it may be renumbered on a merge).
    (scopes_migration,) = [
        key
        for key, migration in executor.loader.disk_migrations.items()
        if any(isinstance(op, AddField) and op.name == "scope_read" for op in migration.operations)
    ]
    (before,) = [p for p in executor.loader.graph.node_map[scopes_migration].parents if p.key[0] == "tracer"]
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate([before.key])
        old = executor.loader.project_state([before.key]).apps
        project = old.get_model("tracer", "Project").objects.create(name="Old", slug="old")
        old.get_model("tracer", "ApiKey").objects.create(project=project, prefix="otk_old", key_hash="0" * 64)

        executor = MigrationExecutor(connection)
        executor.migrate([scopes_migration])

        new = executor.loader.project_state([scopes_migration]).apps
        key = new.get_model("tracer", "ApiKey").objects.get(prefix="otk_old")
        assert (key.scope_ingest, key.scope_read) == (True, True)
        assert ApiKey(scope_ingest=key.scope_ingest, scope_read=key.scope_read).scope_label == "legacy: ingest + read"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
