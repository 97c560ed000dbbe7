"""Big trees in a real browser: the first page of a wide node, "show more", and expanding a node
whose children were not sent with the page (expand on demand)."""

from __future__ import annotations

import pytest

from tests.browser.pages import logged_in
from tests.factories import NOW, ingest_spans, otlp_span, sid, tid

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_wide_and_deep_trees_load_the_rest_on_demand(live_server, page, project_a) -> None:
    trace = tid(42)
    spans = [otlp_span(sid(1), trace=trace, name="root", start=NOW)]
    # 150 children under the root, and a chain of 8 levels under the first child.
    spans += [otlp_span(sid(100 + i), sid(1), trace=trace, name=f"step {i}", start=NOW + 10 + i) for i in range(150)]
    parent = sid(100)
    for level in range(1, 9):
        spans.append(otlp_span(sid(1000 + level), parent, trace=trace, name=f"level {level}", start=NOW + 1000 + level))
        parent = sid(1000 + level)
    ingest_spans(project_a, *spans)

    logged_in(page, live_server, "bob", "bob-password")
    page.goto(f"{live_server.url}/p/{project_a.slug}/traces/{trace}/")
    rows = page.locator("table[data-tree-table] tbody tr.node")
    # root, the first 100 children, and the chain under step 0 down to the opening depth.
    assert page.locator(f"tr[data-span-id='{sid(100 + 99)}']").count() == 1
    assert page.locator(f"tr[data-span-id='{sid(100 + 100)}']").count() == 0
    before = rows.count()

    page.click("tr.more [data-more]")
    page.locator(f"tr[data-span-id='{sid(100 + 149)}']").wait_for()
    assert rows.count() == before + 50
    assert page.locator("tr.more").count() == 0

    # The chain is open down to level 1; level 2 is shown collapsed, its child was not sent.
    level2 = page.locator(f"tr[data-span-id='{sid(1002)}']")
    assert level2.get_attribute("data-expanded") == "0"
    assert page.locator(f"tr[data-span-id='{sid(1003)}']").count() == 0
    level2.locator("[data-toggle]").click()
    page.locator(f"tr[data-span-id='{sid(1003)}']").wait_for(state="visible")
    # Collapsing hides what was loaded, expanding again shows it without another request.
    level2.locator("[data-toggle]").click()
    assert page.locator(f"tr[data-span-id='{sid(1003)}']").is_hidden()
    level2.locator("[data-toggle]").click()
    assert page.locator(f"tr[data-span-id='{sid(1003)}']").is_visible()
    assert page.js_errors == []
