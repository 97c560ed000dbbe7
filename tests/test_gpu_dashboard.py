"""The GPUs page and a trace page's GPU panel (dashboard/gpu_views.py), through the test client."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client


def figure(html: str, name: str) -> dict:
    match = re.search(rf'<script id="{name}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no figure {name}"
    return json.loads(match.group(1))


@pytest.mark.django_db
def test_the_gpus_page_shows_each_gpu_its_cost_and_what_was_attributed(client: Client, bob, gpu_data) -> None:
    client.force_login(bob)
    response = client.get("/p/project-a/gpus/")
    assert response.status_code == 200
    html = response.content.decode()
    # 10 s of an H100 at $2.50/h = $0.006944; the call had it alone for 4 s = $0.002778; idle 6 s.
    assert re.search(r'data-stat="gpu-measured-cost"[^>]*>\$0\.00694', html)
    assert re.search(r'data-stat="gpu-attributed-cost"[^>]*>\$0\.00277', html)
    assert re.search(r'data-stat="gpu-idle-cost">\$0\.00416', html)
    assert re.search(r'data-stat="gpu-api-cost"[^>]*>\$0\.0100', html)
    assert "GPU-dash" in html and "GPU-secret" not in html
    util = figure(html, "fig-gpu-util")
    assert util["data"][0]["name"] == "nim-1 #0"
    assert max(util["data"][0]["y"]) == 90
    # The trace is a shaded band over its 4 s.
    assert len(util["layout"]["shapes"]) == 1
    assert figure(html, "fig-gpu-power")["data"][0]["y"][0] == 400.0


@pytest.mark.django_db
def test_the_gpus_page_runs_a_fixed_number_of_queries(client, bob, gpu_data, django_assert_num_queries) -> None:
    client.force_login(bob)
    client.get("/p/project-a/gpus/")
    # session, user, membership; the samples' extent, devices, endpoints and their devices, raw and
    # rollup totals, rollup and raw series, active traces, attributed totals; the base page's
    # project switcher and budget alerts. However many samples there are.
    with django_assert_num_queries(15):
        assert client.get("/p/project-a/gpus/").status_code == 200


@pytest.mark.django_db
def test_a_trace_page_shows_each_steps_gpu_share_next_to_its_api_cost(client, bob, gpu_data) -> None:
    client.force_login(bob)
    html = client.get(f"/p/project-a/traces/{gpu_data}/").content.decode()
    assert "data-trace-gpu" in html
    row = re.search(r'data-table="trace-gpu-steps".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert "chat nemotron-super" in row and "planner" in row
    assert "4.000" in row and "0.4444 Wh" in row  # 4 s x 400 W = 1600 J
    assert "$0.0100" in row and "$0.00277" in row
    assert figure(html, "fig-trace-gpu")["data"][0]["name"] == "nim-1 #0"


@pytest.mark.django_db
def test_without_gpus_the_page_says_how_to_add_them(client, alice, project_a) -> None:
    client.force_login(alice)
    html = client.get("/p/project-a/gpus/").content.decode()
    assert 'data-gpus="none"' in html and "octotrace gpu-agent" in html


@pytest.mark.django_db
def test_someone_outside_the_project_gets_404(client, charlie, gpu_data) -> None:
    client.force_login(charlie)
    assert client.get("/p/project-a/gpus/").status_code == 404


@pytest.mark.django_db
def test_the_agents_and_models_pages_show_gpu_cost_next_to_api_cost(client, bob, gpu_data) -> None:
    client.force_login(bob)
    agents = client.get("/p/project-a/agents/").content.decode()
    row = re.search(r"<tr><td><a [^>]*agent=planner\">planner</a></td>(.*?)</tr>", agents, re.S).group(1)
    assert "$0.0100" in row and "$0.00277" in row
    models = client.get("/p/project-a/models/").content.decode()
    assert "GPU $" in models and "$0.00277" in models
