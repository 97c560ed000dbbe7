"""The audit log: who changed what in a project (keys, members, prices, budgets, deletions).

The services that make a change record it (`audit_record`), inside their own transaction where
they have one, so views, commands and the API cannot forget to; owners read it on the dashboard's
audit page and its CSV. Events are only ever added.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from tracer.models import AuditEvent, Project

Action = AuditEvent.Action

CSV_HEADER = ["created_at", "action", "actor", "target", "details"]


def audit_record(
    *,
    project: Project,
    actor: AbstractBaseUser | None,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record one change. `actor` is None for a management command or an API key (say which key in
    `details`). `details` must be JSON: plain values, money as decimal strings."""
    if action not in Action.values:
        raise ValueError(f"unknown audit action {action!r}")
    user = actor if actor is not None and actor.is_authenticated else None
    return AuditEvent.objects.create(
        project=project,
        actor=user,
        actor_name=user.get_username() if user is not None else "",
        action=action,
        target=target,
        details=details or {},
    )


def audit_events(*, project: Project, action: str = "") -> QuerySet[AuditEvent]:
    """The project's events, newest first, of one action when given (an unknown action matches
    nothing). Served by auditevent_project_time_idx."""
    events = AuditEvent.objects.filter(project=project)
    if action:
        events = events.filter(action=action)
    return events.order_by("-created_at", "-pk")


def audit_csv_rows(*, project: Project, action: str = "") -> Iterator[list[Any]]:
    """The header, then one row per event (newest first), streamed from the database. Cells are
    raw values: the CSV writer (reports/exports.py csv_stream) guards them against formulas."""
    yield CSV_HEADER
    events = audit_events(project=project, action=action).values_list(
        "created_at", "action", "actor_name", "target", "details"
    )
    for created_at, action_value, actor_name, target, details in events.iterator(chunk_size=2000):
        yield [created_at.isoformat(), action_value, actor_name, target, json.dumps(details, sort_keys=True)]
