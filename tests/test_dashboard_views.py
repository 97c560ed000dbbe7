"""The dashboard's pages through Django's test client: tenancy and roles, pinned query counts,
filters, the tree's expand-on-demand, prices, members and keys, escaping and security headers.
Data goes in through the ingest service (tests/factories.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client

from dashboard.selectors import TREES
from tests.factories import MODEL, NOW, crew_trace, ingest_spans, otlp_span, price, sid, tid
from tracer.celery import app as celery_app
from tracer.models import ApiKey, Membership, ModelPrice, Project, Span, Trace
from tracer.pricing import REPRICE_TASK, spans_reprice
from tracer.projects import apikey_authenticate


@pytest.fixture
def priced(db):
    return price(input="2", cached_input="0.5", output="10")


def login(client: Client, user) -> Client:
    client.force_login(user)
    return client


# --- Who sees what ------------------------------------------------------------------------------


def test_pages_need_a_login(client, project_a) -> None:
    response = client.get(f"/p/{project_a.slug}/traces/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize("page", ["", "traces/", "agents/", "models/", "prices/"])
def test_a_user_who_is_not_a_member_gets_404(client, project_a, charlie, page) -> None:
    assert login(client, charlie).get(f"/p/{project_a.slug}/{page}").status_code == 404


def test_another_projects_trace_is_404_under_either_slug(client, project_a, project_b, bob) -> None:
    foreign = crew_trace(project_b, 1)
    login(client, bob)
    assert client.get(f"/p/{project_b.slug}/traces/{foreign}/").status_code == 404
    assert client.get(f"/p/{project_a.slug}/traces/{foreign}/").status_code == 404
    assert client.get(f"/p/{project_a.slug}/traces/{foreign}/spans/{sid(1)}").status_code == 404
    assert client.get(f"/p/{project_a.slug}/traces/{foreign}/children?parent={sid(1)}").status_code == 404


def test_the_switcher_lists_only_my_projects(client, project_a, project_b, bob) -> None:
    html = login(client, bob).get(f"/p/{project_a.slug}/").content.decode()
    assert "Project A" in html and "Project B" not in html


def test_home_opens_my_first_project(client, project_a, bob) -> None:
    response = login(client, bob).get("/")
    assert response.status_code == 302 and response["Location"] == f"/p/{project_a.slug}/"


def test_the_switcher_opens_the_project_it_names_and_only_mine(client, project_a, project_b, alice) -> None:
    other = Project.objects.create(name="Zeta", slug="zeta")
    Membership.objects.create(project=other, user=alice, role=Membership.Role.VIEWER)
    login(client, alice)
    assert client.get("/", {"project": "zeta"})["Location"] == "/p/zeta/"
    # Not a member of project B: the switcher does not open it.
    assert client.get("/", {"project": project_b.slug}).status_code == 404


def test_a_user_without_projects_is_told_how_to_get_one(client, charlie) -> None:
    assert "No projects yet" in login(client, charlie).get("/").content.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "settings/"),
        ("post", "settings/keys"),
        ("post", "settings/members"),
        ("post", "prices/add"),
    ],
)
def test_a_member_who_is_not_owner_gets_403_on_owner_actions(client, project_a, bob, method, path) -> None:
    response = getattr(login(client, bob), method)(f"/p/{project_a.slug}/{path}")
    assert response.status_code == 403


# --- Pinned query counts ------------------------------------------------------------------------


def test_the_traces_list_runs_a_fixed_number_of_queries(client, project_a, bob, priced, django_assert_num_queries):
    for n in range(1, 4):
        crew_trace(project_a, n)
    login(client, bob)
    # session, user, membership, switcher, count, page, agents of the page, workflow names, budget banner
    with django_assert_num_queries(9):
        small = client.get(f"/p/{project_a.slug}/traces/")
    for n in range(4, 30):
        crew_trace(project_a, n, start=NOW + n)
    with django_assert_num_queries(9):
        big = client.get(f"/p/{project_a.slug}/traces/")
    assert small.status_code == big.status_code == 200
    assert len(big.context["listing"].page.object_list) == 29


def test_the_trace_page_runs_a_fixed_number_of_queries(client, project_a, bob, priced, django_assert_num_queries):
    trace = crew_trace(project_a, 1)
    login(client, bob)
    # session, user, membership, switcher, trace, its spans, the selected span, budget banner
    with django_assert_num_queries(8):
        response = client.get(f"/p/{project_a.slug}/traces/{trace}/?span={sid(3)}")
    assert response.status_code == 200


@pytest.mark.parametrize("page", ["", "agents/", "models/", "prices/"])
def test_the_other_pages_run_a_fixed_number_of_queries(client, project_a, bob, priced, page) -> None:
    login(client, bob)
    crew_trace(project_a, 1)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get(f"/p/{project_a.slug}/{page}").status_code == 200
    for n in range(2, 12):
        crew_trace(project_a, n, start=NOW + n)
    with CaptureQueriesContext(connection) as many:
        assert client.get(f"/p/{project_a.slug}/{page}").status_code == 200
    assert len(many) == len(few)


# --- What the pages say -------------------------------------------------------------------------


def test_the_overview_sums_billed_spans_only(client, project_a, bob, priced) -> None:
    crew_trace(project_a, 1)
    crew_trace(project_a, 2, error=True)
    stats = login(client, bob).get(f"/p/{project_a.slug}/").context["stats"]
    assert stats["trace_count"] == 2 and stats["span_count"] == 10
    assert stats["input_tokens"] == 2 * 3000 and stats["cached_input_tokens"] == 400
    assert stats["output_tokens"] == 1600 and stats["reasoning_tokens"] == 200
    # Per trace: planner (800 x 2 + 200 x 0.5 + 300 x 10) + coder (2000 x 2 + 500 x 10), per 1M.
    per_trace = (Decimal(800 * 2 + 200 * 0.5 + 300 * 10) + Decimal(2000 * 2 + 500 * 10)) / 10**6
    assert stats["cost"] == 2 * per_trace
    assert stats["cost_per_trace"] == per_trace
    assert stats["error_rate"] == 0.5
    assert stats["p50_ns"] == 10**9 and stats["unpriced_count"] == 0


def test_an_unknown_model_is_unpriced_not_free(client, project_a, bob, priced) -> None:
    crew_trace(project_a, 1, cost_model="acme/mystery-1")
    login(client, bob)
    stats = client.get(f"/p/{project_a.slug}/").context["stats"]
    assert stats["cost"] is None and stats["unpriced_count"] == 2
    html = client.get(f"/p/{project_a.slug}/traces/").content.decode()
    assert "unpriced" in html and "$0.00<" not in html
    [row] = client.get(f"/p/{project_a.slug}/models/").context["rows"]
    assert row["model"] == "acme/mystery-1" and row["cost"] is None and row["unpriced"] == 2


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {1, 2, 3}),
        ({"agent": "coder"}, {1, 2, 3}),
        ({"agent": "nobody"}, set()),
        ({"status": "error"}, {2}),
        ({"root": "invoke_workflow flow1"}, {1, 3}),
        ({"q": "flow0"}, {2}),
        ({"q": tid(3)}, {3}),
        ({"q": sid(4)}, {1, 2, 3}),
        ({"q": "ffffffffffffffff"}, set()),
        ({"model": MODEL}, {1, 2, 3}),
        ({"min_cost": "0.0138"}, set()),
        ({"min_cost": "0.0137"}, {1, 2, 3}),
        ({"min_cost": "0.01"}, {1, 2, 3}),
    ],
)
def test_the_traces_list_filters_on_the_server(client, project_a, bob, priced, params, expected) -> None:
    crew_trace(project_a, 1)
    crew_trace(project_a, 2, error=True)
    crew_trace(project_a, 3)
    response = login(client, bob).get(f"/p/{project_a.slug}/traces/", params)
    assert {t.trace_id for t in response.context["listing"].page.object_list} == {tid(n) for n in expected}


def test_the_traces_list_sorts_and_pages(client, project_a, bob, priced) -> None:
    for n in range(1, 56):
        crew_trace(project_a, n, start=NOW + n * 1000)
    login(client, bob)
    first = client.get(f"/p/{project_a.slug}/traces/").context["listing"].page
    assert first.paginator.count == 55 and len(first.object_list) == 50
    assert first.object_list[0].trace_id == tid(55)
    second = client.get(f"/p/{project_a.slug}/traces/", {"page": 2}).context["listing"].page
    assert [t.trace_id for t in second.object_list] == [tid(n) for n in range(5, 0, -1)]
    oldest = client.get(f"/p/{project_a.slug}/traces/", {"sort": "start"}).context["listing"].page
    assert oldest.object_list[0].trace_id == tid(1)


@pytest.mark.parametrize(
    ("page", "params", "reason"),
    [
        ("traces/", {"sort": "bogus"}, "sort="),
        ("traces/", {"min_cost": "lots"}, "min_cost"),
        ("traces/", {"range": "1y"}, "range="),
        ("", {"from": "yesterday"}, "is not a date"),
        ("agents/", {"sort": "-nope"}, "sort="),
    ],
)
def test_a_bad_parameter_is_400_with_the_reason(client, project_a, bob, page, params, reason) -> None:
    response = login(client, bob).get(f"/p/{project_a.slug}/{page}", params)
    assert response.status_code == 400
    assert reason in response.content.decode()


def test_agents_and_models_pages_total_per_agent_and_model(client, project_a, bob, priced) -> None:
    crew_trace(project_a, 1)
    crew_trace(project_a, 2)
    login(client, bob)
    rows = {r["agent"]: r for r in client.get(f"/p/{project_a.slug}/agents/").context["rows"]}
    planner_call = (Decimal(800 * 2) + Decimal(200) * Decimal("0.5") + Decimal(300 * 10)) / 10**6
    assert rows["planner"]["runs"] == 2 and rows["planner"]["calls"] == 2 and rows["planner"]["traces"] == 2
    assert rows["planner"]["cost"] == 2 * planner_call and rows["planner"]["cost_per_call"] == planner_call
    assert rows["coder"]["input_tokens"] == 4000
    [model] = client.get(f"/p/{project_a.slug}/models/").context["rows"]
    assert model["calls"] == 4 and model["traces"] == 2
    assert model["cost"] == rows["planner"]["cost"] + rows["coder"]["cost"]
    ordered = client.get(f"/p/{project_a.slug}/agents/", {"sort": "agent"}).context["rows"]
    assert [r["agent"] for r in ordered] == ["coder", "planner"]


# --- The tree -----------------------------------------------------------------------------------


def wide_trace(project: Project, children: int) -> str:
    trace = tid(99)
    spans = [otlp_span(sid(1), trace=trace, name="root", start=NOW)]
    spans += [otlp_span(sid(10 + i), sid(1), trace=trace, name=f"step {i}", start=NOW + i) for i in range(children)]
    ingest_spans(project, *spans)
    return trace


def test_a_wide_tree_opens_a_page_of_children_and_loads_the_rest_on_demand(client, project_a, bob) -> None:
    trace = wide_trace(project_a, 250)
    login(client, bob)
    html = client.get(f"/p/{project_a.slug}/traces/{trace}/").content.decode()
    assert html.count('class="node') == 1 + 100
    assert f'data-more-parent="{sid(1)}" data-more-offset="100"' in html
    more = client.get(f"/p/{project_a.slug}/traces/{trace}/children", {"parent": sid(1), "offset": 100})
    body = more.content.decode()
    assert body.count('class="node') == 100 and 'data-more-offset="200"' in body
    last = client.get(f"/p/{project_a.slug}/traces/{trace}/children", {"parent": sid(1), "offset": 200})
    names = re.findall(r"data-span-link>([^<]+)<", last.content.decode())
    assert names == [f"step {i}" for i in range(200, 250)]
    assert "data-more" not in last.content.decode()


def test_an_expand_reuses_the_built_tree_until_the_trace_changes(
    client, project_a, bob, django_assert_num_queries
) -> None:
    trace = wide_trace(project_a, 3)
    login(client, bob)
    url = f"/p/{project_a.slug}/traces/{trace}/children"
    TREES.clear()
    # session, user, membership, trace row, its spans
    with django_assert_num_queries(5):
        client.get(url, {"parent": sid(1)})
    with django_assert_num_queries(4):  # the same, less the spans: the tree built above is reused
        again = client.get(url, {"parent": sid(1)})
    assert re.findall(r"data-span-link>([^<]+)<", again.content.decode()) == ["step 0", "step 1", "step 2"]

    # A late span of the same trace: its batch rewrites the trace's rollups, so the next expand rebuilds.
    ingest_spans(project_a, otlp_span(sid(50), sid(1), trace=trace, name="late step", start=NOW + 9))
    with django_assert_num_queries(5):
        late = client.get(url, {"parent": sid(1)})
    assert re.findall(r"data-span-link>([^<]+)<", late.content.decode())[-1] == "late step"


def test_a_deep_tree_opens_collapsed_below_a_depth(client, project_a, bob) -> None:
    trace = tid(77)
    spans = [otlp_span(sid(1), trace=trace, name="level 0", start=NOW)]
    spans += [otlp_span(sid(i + 1), sid(i), trace=trace, name=f"level {i}", start=NOW + i) for i in range(1, 30)]
    ingest_spans(project_a, *spans)
    login(client, bob)
    html = client.get(f"/p/{project_a.slug}/traces/{trace}/").content.decode()
    assert html.count('class="node') == 4
    rows = client.get(f"/p/{project_a.slug}/traces/{trace}/children", {"parent": sid(4)}).content.decode()
    assert re.findall(r"data-span-link>([^<]+)<", rows) == ["level 4"]


def test_each_node_shows_its_own_and_its_subtree_cost(client, project_a, bob, priced) -> None:
    trace = crew_trace(project_a, 1)
    response = login(client, bob).get(f"/p/{project_a.slug}/traces/{trace}/")
    rows = {row.node.span_id: row for row in response.context["rows"]}
    call = Span.objects.get(project=project_a, trace_id=trace, span_id=sid(3))
    assert rows[sid(3)].own["cost"] == call.cost
    everything = Trace.objects.get(project=project_a, trace_id=trace).cost
    assert rows[sid(1)].subtree["cost"] == everything
    assert rows[sid(4)].subtree["input_tokens"] == 2000
    assert rows[sid(4)].node.agent == "coder" and rows[sid(5)].node.agent == "coder"


# --- Prices, members, keys ----------------------------------------------------------------------


def test_an_owner_prices_an_unpriced_model_and_stored_calls_follow(
    client, project_a, alice, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    crew_trace(project_a, 1, cost_model="acme/mystery-1")
    login(client, alice)
    page = client.get(f"/p/{project_a.slug}/prices/")
    assert [u["model"] for u in page.context["unpriced"]] == ["acme/mystery-1"]
    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, countdown=None: sent.append((name, args)))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/p/{project_a.slug}/prices/add",
            {"model_pattern": "acme/mystery-1", "input": "1", "output": "2", "valid_from": "2020-01-01"},
        )
    assert response.status_code == 302
    assert sent == [(REPRICE_TASK, [project_a.pk])]
    override = ModelPrice.objects.get(project=project_a)
    assert override.input == Decimal("1") and override.cached_input is None
    spans_reprice(project_id=project_a.pk)  # what the task does
    assert Trace.objects.get(project=project_a).cost == Decimal(3000 * 1 + 800 * 2) / 10**6
    assert client.get(f"/p/{project_a.slug}/prices/").context["unpriced"] == []


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"model_pattern": "", "input": "1", "output": "1"}, "Model pattern is required"),
        ({"model_pattern": "m", "input": "-1", "output": "1"}, "not a non-negative number"),
        ({"model_pattern": "m", "input": "1", "output": "NaN"}, "not a non-negative number"),
        ({"model_pattern": "m", "input": "1"}, "output price is required"),
        ({"model_pattern": "m", "input": "1", "output": "1", "valid_from": "soon"}, "Valid from must be a date"),
        ({"model_pattern": "m", "input": "0.0000001", "output": "1"}, "has more than 6 decimal places"),
    ],
)
def test_a_bad_price_is_refused_with_the_reason_and_nothing_is_stored(client, project_a, alice, form, message):
    response = login(client, alice).post(f"/p/{project_a.slug}/prices/add", form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ModelPrice.objects.filter(project=project_a).exists()


def test_an_owner_creates_a_key_seen_once_and_revokes_it(client, project_a, alice) -> None:
    login(client, alice)
    response = client.post(f"/p/{project_a.slug}/settings/keys", {"name": "ci"})
    ((key, secret),) = response.context["new_keys"]
    assert secret in response.content.decode()
    assert key.scopes == ("ingest",)
    key = ApiKey.objects.get(project=project_a, name="ci")
    assert key.key_hash != secret and secret not in client.get(f"/p/{project_a.slug}/settings/").content.decode()
    client.post(f"/p/{project_a.slug}/settings/keys/{key.pk}/revoke")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_an_owner_chooses_a_read_key_and_sees_each_keys_scope(client, project_a, alice, key_a) -> None:
    login(client, alice)
    response = client.post(f"/p/{project_a.slug}/settings/keys", {"name": "reports", "scope": "read"})

    ((key, secret),) = response.context["new_keys"]
    assert apikey_authenticate(secret=secret).scopes == ("read",)
    html = response.content.decode()
    assert "New read key" in html
    scopes = dict(re.findall(r'<tr data-key="([^"]+)">.*?<td data-scope>([^<]+)</td>', html))
    assert scopes == {key.prefix: "read", key_a[0].prefix: "legacy: ingest + read"}


def test_a_key_with_an_unknown_scope_is_refused(client, project_a, alice) -> None:
    response = login(client, alice).post(f"/p/{project_a.slug}/settings/keys", {"name": "x", "scope": "admin"})
    assert response.status_code == 400
    assert not ApiKey.objects.filter(project=project_a, name="x").exists()


def test_an_owner_splits_a_legacy_key_into_an_ingest_key_and_a_read_key(client, project_a, alice, key_a) -> None:
    legacy, legacy_secret = key_a
    login(client, alice)
    assert "Split into ingest + read" in client.get(f"/p/{project_a.slug}/settings/").content.decode()

    response = client.post(f"/p/{project_a.slug}/settings/keys/{legacy.pk}/split")

    assert response.status_code == 200
    (ingest_key, ingest_secret), (read_key, read_secret) = response.context["new_keys"]
    html = response.content.decode()
    assert ingest_secret in html and read_secret in html
    assert apikey_authenticate(secret=legacy_secret) is None
    assert apikey_authenticate(secret=ingest_secret).scopes == ("ingest",)
    assert apikey_authenticate(secret=read_secret).scopes == ("read",)
    assert ingest_key.name == read_key.name == legacy.name
    # Splitting twice does nothing more.
    again = client.post(f"/p/{project_a.slug}/settings/keys/{legacy.pk}/split", follow=True)
    assert "is not an active legacy key" in again.content.decode()
    assert ApiKey.objects.filter(project=project_a, revoked_at__isnull=True).count() == 2


def test_only_an_owner_splits_a_key_and_only_of_their_project(client, project_a, bob, alice, key_a, key_b) -> None:
    assert login(client, bob).post(f"/p/{project_a.slug}/settings/keys/{key_a[0].pk}/split").status_code == 403
    assert login(client, alice).post(f"/p/{project_a.slug}/settings/keys/{key_b[0].pk}/split").status_code == 404
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0


def test_an_owner_adds_changes_and_removes_a_member(client, project_a, alice, charlie) -> None:
    login(client, alice)
    client.post(f"/p/{project_a.slug}/settings/members", {"username": "charlie", "role": "viewer"})
    membership = Membership.objects.get(project=project_a, user=charlie)
    assert membership.role == "viewer"
    client.post(f"/p/{project_a.slug}/settings/members", {"username": "charlie", "role": "member"})
    membership.refresh_from_db()
    assert membership.role == "member"
    client.post(f"/p/{project_a.slug}/settings/members/{membership.pk}/remove")
    assert not Membership.objects.filter(project=project_a, user=charlie).exists()


def test_a_duplicate_price_is_refused_and_only_an_own_override_is_deleted(
    client, project_a, project_b, alice, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    login(client, alice)
    form = {"model_pattern": "acme/mystery-1", "input": "1", "output": "2"}
    client.post(f"/p/{project_a.slug}/prices/add", form)
    response = client.post(f"/p/{project_a.slug}/prices/add", form)
    assert response.status_code == 400 and "An override for this provider, model pattern and date exists" in (
        response.content.decode()
    )
    theirs = price(project=project_b)
    assert client.post(f"/p/{project_a.slug}/prices/{theirs.pk}/delete").status_code == 404
    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, countdown=None: sent.append((name, args)))
    override = ModelPrice.objects.get(project=project_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/p/{project_a.slug}/prices/{override.pk}/delete", follow=True)
    assert "Override deleted; stored calls are being re-priced." in response.content.decode()
    assert sent == [(REPRICE_TASK, [project_a.pk])]
    assert ModelPrice.objects.filter(project=project_b).exists()


def test_member_changes_the_rules_refuse_are_explained(client, project_a, project_b, alice, bob) -> None:
    login(client, alice)
    url = f"/p/{project_a.slug}/settings/members"
    response = client.post(url, {"username": "bob", "role": "admin"})
    assert response.status_code == 400 and "role must be one of owner, member, viewer" in response.content.decode()
    page = client.post(url, {"username": "nobody", "role": "member"}, follow=True).content.decode()
    assert "No user named &#x27;nobody&#x27;." in page
    page = client.post(url, {"username": "alice", "role": "viewer"}, follow=True).content.decode()
    assert "You cannot lower your own role; another owner can." in page
    own = Membership.objects.get(project=project_a, user=alice)
    page = client.post(f"{url}/{own.pk}/remove", follow=True).content.decode()
    assert "You cannot remove yourself." in page
    theirs = Membership.objects.create(project=project_b, user=bob, role=Membership.Role.MEMBER)
    assert client.post(f"{url}/{theirs.pk}/remove").status_code == 404
    assert Membership.objects.filter(pk=theirs.pk).exists()
    assert Membership.objects.get(project=project_a, user=alice).role == Membership.Role.OWNER


def test_an_owner_cannot_touch_another_projects_keys(client, project_a, project_b, alice, key_b) -> None:
    response = login(client, alice).post(f"/p/{project_a.slug}/settings/keys/{key_b[0].pk}/revoke")
    assert response.status_code == 404
    key_b[0].refresh_from_db()
    assert key_b[0].revoked_at is None


# --- Safety -------------------------------------------------------------------------------------


def test_span_text_is_escaped(client, project_a, bob) -> None:
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    ingest_spans(project_a, otlp_span(sid(1), trace=tid(5), name=payload, start=NOW, attrs={"note": payload}))
    login(client, bob)
    for url in (f"/p/{project_a.slug}/traces/", f"/p/{project_a.slug}/traces/{tid(5)}/?span={sid(1)}"):
        html = client.get(url).content.decode()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
        assert "<script>alert" not in html and "<img src=x" not in html


def test_pages_send_security_headers(client, project_a, bob) -> None:
    response = login(client, bob).get(f"/p/{project_a.slug}/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_templates_have_no_inline_script(client, project_a, bob, priced) -> None:
    trace = crew_trace(project_a, 1)
    login(client, bob)
    for url in ("", "traces/", f"traces/{trace}/", "agents/", "models/", "prices/"):
        html = client.get(f"/p/{project_a.slug}/{url}").content.decode()
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, tag
        assert " onclick=" not in html and " onload=" not in html


def test_forms_need_the_csrf_token(project_a, alice) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(f"/p/{project_a.slug}/settings/keys", {"name": "x"})
    assert response.status_code == 403
    assert not ApiKey.objects.filter(project=project_a, name="x").exists()


def test_plotly_is_served_by_us(client) -> None:
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200 and response["Content-Type"] == "text/javascript"
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()


def test_duration_percentiles_are_nearest_rank(client, project_a, bob) -> None:
    # Durations 1..20 ms: p50 is the 10th value, p95 the 19th, on SQLite and PostgreSQL alike.
    for n in range(1, 21):
        ingest_spans(project_a, otlp_span(sid(1), trace=tid(n), start=NOW + n, duration=n * 10**6))
    stats = login(client, bob).get(f"/p/{project_a.slug}/").context["stats"]
    assert (stats["p50_ns"], stats["p95_ns"]) == (10 * 10**6, 19 * 10**6)


def test_custom_dates_pick_the_traces_of_those_days(client, project_a, bob) -> None:
    day = 86_400 * 10**9
    crew_trace(project_a, 1, start=NOW - 10 * day)
    crew_trace(project_a, 2, start=NOW - 3 * day)
    login(client, bob)
    ten_days_ago = datetime.fromtimestamp((NOW - 10 * day) / 1e9, tz=UTC).date().isoformat()
    page = client.get(f"/p/{project_a.slug}/traces/", {"from": ten_days_ago, "to": ten_days_ago})
    assert [t.trace_id for t in page.context["listing"].page.object_list] == [tid(1)]
    assert f'value="{ten_days_ago}"' in page.content.decode()
    default = client.get(f"/p/{project_a.slug}/traces/").context["listing"].page.object_list
    assert [t.trace_id for t in default] == [tid(2)]
