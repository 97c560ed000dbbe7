"""Who may reach what: every URL pattern of the site, asked by every kind of caller.

Callers: a session of each role of project A (owner alice, member bob, viewer dave), a user with
no access (charlie), nobody; and project A's API keys of each scope (ingest, read, legacy = both),
a revoked key, and a read key of project B. Every row names the status each caller must get;
`LOGIN` is the redirect to the login page. The last test walks `django.urls.get_resolver()`: a URL
pattern without a row here fails it, so a new endpoint cannot ship without saying who reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, path, resolve, reverse

from reports import budgets
from tests.factories import (
    BOTH_SCOPES,
    decode_status,
    ingest_spans,
    otlp_span,
    price,
    sid,
    spans_body,
    tid,
    user_create,
)
from tracer import otlp
from tracer.celery import app as celery_app
from tracer.models import ApiKey, Membership
from tracer.projects import apikey_create, apikey_revoke

SESSIONS = ("owner", "member", "viewer", "non-member", "anonymous")
KEYS = ("ingest-key", "read-key", "legacy-key", "revoked-key", "other-project-read-key")
CALLERS = SESSIONS + KEYS
LOGIN = "login"  # 302 to the login page
ADMIN_LOGIN = "admin-login"  # 302 to the admin's login page
EXPORT_KINDS = ("traces", "spans", "agents", "models", "daily")
TRACE = tid(1)
# A valid OTLP request holding nothing (one empty ResourceMetrics): answered 200, nothing stored.
EMPTY_METRICS = b"\n\x00"


def otlp_row(name: str, path: str, body: bytes) -> Row:
    expect = {caller: 401 for caller in SESSIONS}
    expect.update({"ingest-key": 200, "legacy-key": 200, "read-key": 403, "other-project-read-key": 403})
    expect["revoked-key"] = 401
    return Row(name, path, method="post", body=body, expect=expect)


def api_row(name: str, path: str) -> Row:
    # Every caller names project A (?project=): a key of another project gets a 404, like an unknown id.
    expect = {"owner": 200, "member": 200, "viewer": 200, "non-member": 404, "anonymous": 401}
    expect.update({"ingest-key": 403, "read-key": 200, "legacy-key": 200, "revoked-key": 401})
    expect["other-project-read-key"] = 404
    return Row(name, path + "?project={slug}", expect=expect)


def delete_row(name: str, path: str) -> Row:
    """Deletion on request through the API: an owner's login only; no API key deletes."""
    expect = {"owner": 200, "member": 403, "viewer": 403, "non-member": 404, "anonymous": 401}
    expect.update({"ingest-key": 403, "read-key": 403, "legacy-key": 403, "revoked-key": 401})
    expect["other-project-read-key"] = 404
    return Row(name, path + "?project={slug}", method="delete", expect=expect)


def page_row(name: str, path: str, *, owner: Any = 200, member: Any = 200, viewer: Any = 200, **request: Any) -> Row:
    """A dashboard page: sessions only (an API key is no login), project A's members by role."""
    expect = {"owner": owner, "member": member, "viewer": viewer, "non-member": 404, "anonymous": LOGIN}
    expect.update({key: LOGIN for key in KEYS})
    return Row(name, path, expect=expect, **request)


def everyone(name: str, path: str, status: Any, **request: Any) -> Row:
    return Row(name, path, expect=dict.fromkeys(CALLERS, status), **request)


@dataclass(frozen=True)
class Row:
    name: str  # the URL pattern's name, as get_resolver() lists it
    path: str  # formatted with the ids of the world fixture
    method: str = "get"
    body: bytes | None = None
    data: dict[str, str] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


ROWS = [
    # The OTLP receivers: ingest scope only.
    otlp_row("otlp-traces", "/v1/traces", spans_body(2, trace=TRACE)),
    otlp_row("otlp-metrics", "/v1/metrics", EMPTY_METRICS),
    # The read API (JSON) and the CSV export API: read scope, or a member's session.
    api_row("api-traces", "/api/v1/traces"),
    api_row("api-trace", f"/api/v1/traces/{TRACE}"),
    api_row("api-span", f"/api/v1/traces/{TRACE}/spans/{sid(1)}"),
    api_row("api-prices", "/api/v1/prices"),
    # Deletion on request (the last caller to ask may find nothing left: still 200, zero counts).
    delete_row("api-session", "/api/v1/sessions/s1"),
    delete_row("api-user", "/api/v1/users/u1"),
    *(api_row("api-export", f"/api/v1/export/{kind}.csv") for kind in EXPORT_KINDS),
    # Public pages.
    everyone("dashboard:login", "/login/", 200),
    everyone("dashboard:logout", "/logout/", 302, method="post"),
    everyone("dashboard:plotly-js", "/vendor/plotly.min.js", 200),
    everyone("admin", "/admin/", ADMIN_LOGIN),  # nobody here is staff
    # The home page sends members to their project; charlie has none.
    Row(
        "dashboard:home",
        "/",
        expect={
            **{"owner": 302, "member": 302, "viewer": 302, "non-member": 200, "anonymous": LOGIN},
            **{key: LOGIN for key in KEYS},
        },
    ),
    # Project pages: every member reads; charlie gets a 404 as for a project that does not exist.
    page_row("dashboard:overview", "/p/{slug}/"),
    page_row("dashboard:traces", "/p/{slug}/traces/"),
    page_row("dashboard:trace", f"/p/{{slug}}/traces/{TRACE}/"),
    page_row("dashboard:trace-children", f"/p/{{slug}}/traces/{TRACE}/children"),
    page_row("dashboard:span-panel", f"/p/{{slug}}/traces/{TRACE}/spans/{sid(1)}"),
    page_row("dashboard:agents", "/p/{slug}/agents/"),
    page_row("dashboard:models", "/p/{slug}/models/"),
    page_row("dashboard:prices", "/p/{slug}/prices/"),
    page_row("dashboard:gpus", "/p/{slug}/gpus/"),
    *(page_row("dashboard:export", f"/p/{{slug}}/export/{kind}.csv") for kind in EXPORT_KINDS),
    page_row("dashboard:roi", "/p/{slug}/reports/"),
    page_row("dashboard:roi-run", "/p/{slug}/reports/roi/{run_id}/"),
    page_row("dashboard:roi-run-csv", "/p/{slug}/reports/roi/{run_id}.csv"),
    page_row("dashboard:waste", "/p/{slug}/reports/waste/"),
    page_row("dashboard:whatif", "/p/{slug}/reports/whatif/"),
    page_row("dashboard:budgets", "/p/{slug}/reports/budgets/"),
    page_row("dashboard:audit", "/p/{slug}/audit/", member=403, viewer=403),
    page_row("dashboard:audit-csv", "/p/{slug}/audit.csv", member=403, viewer=403),
    # Actions: a viewer may start a report; a member may value a workflow; owners do the rest.
    page_row("dashboard:roi-start", "/p/{slug}/reports/roi/run", method="post", owner=302, member=302, viewer=302),
    page_row(
        "dashboard:roi-value",
        "/p/{slug}/reports/roi/values",
        method="post",
        data={"workflow": "run", "value_usd": "2"},
        owner=302,
        member=302,
        viewer=403,
    ),
    page_row("dashboard:settings", "/p/{slug}/settings/", member=403, viewer=403),
    *(
        page_row(name, path, method="post", data=data, owner=owner, member=403, viewer=403)
        for name, path, data, owner in (
            (
                "dashboard:price-add",
                "/p/{slug}/prices/add",
                {"model_pattern": "acme-*", "input": "1", "output": "2"},
                302,
            ),
            ("dashboard:price-delete", "/p/{slug}/prices/{price_id}/delete", {}, 302),
            ("dashboard:member-save", "/p/{slug}/settings/members", {"username": "erin", "role": "viewer"}, 302),
            ("dashboard:member-remove", "/p/{slug}/settings/members/{frank_membership}/remove", {}, 302),
            ("dashboard:key-create", "/p/{slug}/settings/keys", {"name": "ci", "scope": "read"}, 200),
            ("dashboard:key-revoke", "/p/{slug}/settings/keys/{spare_key}/revoke", {}, 302),
            ("dashboard:key-split", "/p/{slug}/settings/keys/{spare_legacy_key}/split", {}, 200),
            ("dashboard:budget-save", "/p/{slug}/reports/budgets/save", {"period": "daily", "amount_usd": "5"}, 302),
            ("dashboard:budget-delete", "/p/{slug}/reports/budgets/delete", {"period": "daily"}, 302),
            ("dashboard:trace-delete", f"/p/{{slug}}/traces/{TRACE}/delete", {"confirm": "yes"}, 302),
            ("dashboard:data-delete", "/p/{slug}/settings/delete", {}, 302),
            ("dashboard:budget-webhook-rotate", "/p/{slug}/reports/budgets/webhook-rotate", {"period": "monthly"}, 200),
        )
    ),
]


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    # Seven users per test: with Django's default hasher (a second each here) the setup would dominate.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(project_a, project_b, alice, bob, charlie) -> dict[str, Any]:
    """Project A with a trace, a price override, a budget with a webhook, a finished ROI run, spare
    keys and members to act on."""
    dave, erin, frank = user_create("dave"), user_create("erin"), user_create("frank")
    Membership.objects.create(project=project_a, user=dave, role=Membership.Role.VIEWER)
    frank_membership = Membership.objects.create(project=project_a, user=frank, role=Membership.Role.MEMBER)
    ingest_spans(project_a, otlp_span(sid(1), trace=TRACE, name="run"), otlp_span(sid(2), sid(1), trace=TRACE))
    # A budget whose webhook secret the owner may rotate (an address literal: no DNS in a test).
    budgets.budget_set(project=project_a, period="monthly", amount_usd="100", webhook_url="http://127.0.0.1:9/hook")
    override = price(input="1", output="2")
    override.project = project_a
    override.save(update_fields=["project"])
    revoked, revoked_secret = apikey_create(project=project_a, scopes=BOTH_SCOPES)
    apikey_revoke(key=revoked)
    secrets = {
        "ingest-key": apikey_create(project=project_a)[1],
        "read-key": apikey_create(project=project_a, scopes=(ApiKey.Scope.READ,))[1],
        "legacy-key": apikey_create(project=project_a, scopes=BOTH_SCOPES)[1],
        "revoked-key": revoked_secret,
        "other-project-read-key": apikey_create(project=project_b, scopes=(ApiKey.Scope.READ,))[1],
    }
    return {
        "users": {"owner": alice, "member": bob, "viewer": dave, "non-member": charlie},
        "secrets": secrets,
        "ids": {
            "slug": project_a.slug,
            "price_id": override.pk,
            "frank_membership": frank_membership.pk,
            "spare_key": apikey_create(project=project_a, name="spare")[0].pk,
            "spare_legacy_key": apikey_create(project=project_a, name="old", scopes=BOTH_SCOPES)[0].pk,
            "run_id": roi_run_done(alice, project_a.slug),
        },
        "erin": erin,
    }


def roi_run_done(owner, slug: str) -> int:
    """A finished ROI run of project A, started through its page and run by its task, in-process."""
    client = Client()
    client.force_login(owner)
    started = client.post(f"/p/{slug}/reports/roi/run")
    run_id = int(resolve(started["Location"]).kwargs["run_id"])
    celery_app.loader.import_default_modules()  # the apps' tasks modules, as a worker loads them
    celery_app.tasks["reports.roi_run"].apply(args=[run_id], throw=True)
    (run_model,) = [m for m in apps.get_models() if m.__name__ == "ReportRun"]
    assert run_model.objects.get(pk=run_id).status == "done"
    return run_id


def ask(world: dict[str, Any], row: Row, caller: str):
    client = Client()
    headers: dict[str, str] = {}
    if caller in world["users"]:
        client.force_login(world["users"][caller])
    elif caller in world["secrets"]:
        headers["Authorization"] = f"Bearer {world['secrets'][caller]}"
    path = row.path.format(**world["ids"])
    if row.body is not None:
        return client.post(path, data=row.body, content_type=otlp.PROTOBUF, headers=headers)
    return getattr(client, row.method)(path, row.data, headers=headers)


def outcome(response) -> Any:
    """The status, with the two redirects that mean "log in first" named."""
    if response.status_code == 302:
        location = response["Location"]
        if location.startswith(reverse(settings.LOGIN_URL) + "?"):
            return LOGIN
        if location.startswith(reverse("admin:login") + "?"):
            return ADMIN_LOGIN
    return response.status_code


def check_reason(row: Row, response) -> str | None:
    """A 403 says why: a google.rpc.Status from the receivers, {"error": ...} from the API."""
    if response.status_code != 403 or row.name.startswith("dashboard:"):
        return None
    if row.name.startswith("otlp-"):
        code, message = decode_status(response.content)
        return None if code == 7 and "read scope only" in message else f"bad 403 body {code} {message!r}"
    message = response.json().get("error", "")
    if row.method == "delete":
        reasons = ("ingest scope only", "never delete", "only an owner")
    else:
        reasons = ("ingest scope only",)
    return None if any(reason in message for reason in reasons) else f"bad 403 body {message!r}"


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_every_caller_gets_the_answer_its_scope_or_role_allows(world, row: Row) -> None:
    wrong = []
    for caller in CALLERS:
        response = ask(world, row, caller)
        got = outcome(response)
        if got != row.expect[caller]:
            wrong.append(f"{caller}: expected {row.expect[caller]}, got {got} {response.content[:200]!r}")
        elif reason := check_reason(row, response):
            wrong.append(f"{caller}: {reason}")
    assert not wrong, "\n".join(wrong)


def test_every_row_names_every_caller() -> None:
    assert all(set(row.expect) == set(CALLERS) for row in ROWS)


def url_pattern_names(resolver: URLResolver, namespace: str = "") -> set[str]:
    names = set()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                # Django's admin: staff only, as a whole (one row).
                names.add("admin")
                continue
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= url_pattern_names(pattern, inner)
        elif isinstance(pattern, URLPattern):
            names.add(namespace + (pattern.name or str(pattern.pattern)))
    return names


def test_every_url_pattern_of_the_site_has_a_row() -> None:
    routed = url_pattern_names(get_resolver())
    covered = {row.name for row in ROWS}

    assert routed - covered == set(), "URL patterns without a row in the security matrix"
    assert covered - routed == set(), "rows for URL patterns that no longer exist"


def test_a_new_url_pattern_without_a_row_would_fail_the_check() -> None:
    site = get_resolver()
    grown = URLResolver(site.pattern, [*site.url_patterns, path("v1/logs", lambda request: None, name="otlp-logs")])

    assert url_pattern_names(grown) - {row.name for row in ROWS} == {"otlp-logs"}
