"""The read API's CSV export, `GET /api/v1/export/<kind>.csv` (reports/api.py), through Django's
test client: its authentication, the list API's filters, and its 400s."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests import reports_data
from tests.reports_data import T3, T4, csv_rows
from tracer.models import Span


@pytest.fixture
def loaded(project_a):
    reports_data.load(project_a)
    return project_a


def test_the_api_export_takes_an_api_key_and_the_list_apis_filters(client, loaded, key_a, key_b) -> None:
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key_a[1]}"}
    got = csv_rows(client.get("/api/v1/export/traces.csv", {"from": "2026-03-10T00:00:00Z"}, **auth))
    assert {r["trace_id"] for r in got} == {T3, T4}
    daily = csv_rows(client.get("/api/v1/export/daily.csv", {"to": "2026-03-03T00:00:00Z"}, **auth))
    assert [(r["day"], Decimal(r["cost_usd"])) for r in daily] == [("2026-03-02", Decimal("8.25"))]
    # Another project's key sees only its own (empty) project.
    other = csv_rows(client.get("/api/v1/export/traces.csv", HTTP_AUTHORIZATION=f"Bearer {key_b[1]}"))
    assert other == []


def test_the_api_export_refuses_no_key_and_bad_parameters(client, loaded, key_a, bob) -> None:
    assert client.get("/api/v1/export/traces.csv").status_code == 401
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key_a[1]}"}
    response = client.get("/api/v1/export/traces.csv", {"from": "yesterday"}, **auth)
    assert response.status_code == 400 and "ISO 8601" in response.json()["error"]
    assert client.get("/api/v1/export/nope.csv", **auth).status_code == 400
    # A logged-in member names the project.
    client.force_login(bob)
    assert len(csv_rows(client.get("/api/v1/export/spans.csv", {"project": loaded.slug}))) == Span.objects.count()
