"""What-if pricing (reports/whatif.py) against figures computed by hand from
tests/reports_data.py, and the guarantee that nothing stored changes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reports import whatif
from tests import reports_data
from tests.factories import MODEL, UNPRICED_MODEL, price
from tests.reports_data import T1
from tracer.models import ModelPrice, Span, Trace


@pytest.fixture
def loaded(project_a):
    reports_data.load(project_a)
    # The cheaper model of the scenarios: $1 input, $0.25 cached input, $2 output per 1M tokens.
    price(pattern="cheap-model", input="1", cached_input="0.25", output="2")
    return project_a


def compute(project, params, **filters):
    scenario = whatif.scenario_parse(params=params)
    return whatif.whatif_compute(
        project=project, traces=Trace.objects.filter(project=project, **filters), scenario=scenario
    )


def test_it_reprices_every_call_on_another_model_with_per_agent_savings(loaded) -> None:
    result = compute(loaded, {"target_model": "cheap-model"})
    totals = result["totals"]
    # planner 1M/100k: $1.20; writer 1.5M + 500k cached / 200k: $2.025; T2 1M: $1; critic 2 x $0.30;
    # T4 100/10 on cheap-model: $0.00012 (unpriced today, so not part of the saving).
    assert Decimal(totals["current_usd"]) == Decimal("11.75")
    assert Decimal(totals["whatif_usd"]) == Decimal("4.82512")
    assert Decimal(totals["saving_usd"]) == Decimal("6.925")
    assert (totals["current_unpriced_calls"], totals["whatif_unpriced_calls"]) == (1, 0)
    agents = {a["agent"]: a for a in result["by_agent"]}
    assert Decimal(agents["writer"]["saving_usd"]) == Decimal("3.225")  # 5.25 - 2.025
    assert Decimal(agents["critic"]["whatif_usd"]) == Decimal("0.6")


def test_only_the_calls_of_the_from_model_are_repriced(loaded) -> None:
    result = compute(loaded, {"target_model": "cheap-model", "from_model": UNPRICED_MODEL})
    totals = result["totals"]
    assert (totals["calls"], totals["repriced_calls"]) == (6, 1)
    assert Decimal(totals["whatif_usd"]) == Decimal("11.75") + Decimal("0.00012")
    assert Decimal(totals["saving_usd"]) == 0  # the only repriced call was unpriced before


def test_a_given_price_per_million_tokens(loaded) -> None:
    result = compute(loaded, {"input_price": "1", "output_price": "2"}, trace_id=T1)
    # No cached price given: cached input at the input price. planner $1.20, writer 2M + 200k*2 = $2.40.
    assert Decimal(result["totals"]["whatif_usd"]) == Decimal("3.6")


def test_own_gpus_cost_per_hour_and_throughput_make_one_price(loaded) -> None:
    # $3.60 an hour at 1000 tokens/s: 3.6M tokens an hour, $1 per 1M tokens in and out.
    result = compute(loaded, {"gpu_hourly_usd": "3.60", "tokens_per_second": "1000"}, trace_id=T1)
    assert Decimal(result["totals"]["whatif_usd"]) == Decimal("3.3")  # (1.1M + 2.2M) tokens x $1


def test_a_target_model_without_a_price_is_unpriced_not_free(loaded) -> None:
    totals = compute(loaded, {"target_model": "no-such-model"}, trace_id=T1)["totals"]
    assert totals["whatif_usd"] is None and totals["whatif_unpriced_calls"] == 2
    assert totals["saving_usd"] is None


def test_it_changes_nothing_stored(loaded) -> None:
    def snapshot():
        return (
            list(Span.objects.order_by("pk").values_list("pk", "cost", "billed", "model")),
            list(Trace.objects.order_by("pk").values_list("pk", "cost", "unpriced_count")),
            list(ModelPrice.objects.order_by("pk").values_list("pk", "input", "output", "cached_input")),
        )

    before = snapshot()
    compute(loaded, {"target_model": "cheap-model"})
    compute(loaded, {"input_price": "0", "output_price": "0"})
    compute(loaded, {"gpu_hourly_usd": "2", "tokens_per_second": "50"})
    assert snapshot() == before


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "choose one"),
        ({"target_model": MODEL, "input_price": "1"}, "choose one"),
        ({"input_price": "1"}, "output_price is required"),
        ({"input_price": "x", "output_price": "1"}, "not a number"),
        ({"input_price": "-1", "output_price": "1"}, "0 or more"),
        ({"input_price": "NaN", "output_price": "1"}, "0 or more"),
        ({"gpu_hourly_usd": "2", "tokens_per_second": "0"}, "more than 0"),
    ],
)
def test_it_rejects_a_bad_scenario_with_a_reason(params, message) -> None:
    with pytest.raises(whatif.BadScenario, match=message):
        whatif.scenario_parse(params=params)


def test_the_scenario_says_what_it_assumed() -> None:
    given = whatif.scenario_parse(params={"input_price": "1", "output_price": "2", "from_model": MODEL})
    assert given.label == f"calls to {MODEL} at $1 input, cached input at the input price, $2 output per 1M tokens"
    gpus = whatif.scenario_parse(params={"gpu_hourly_usd": "3.60", "tokens_per_second": "1000"})
    assert gpus.label == "all calls on your GPUs at $3.60/GPU-hour and 1000 tokens/s: $1.000000 per 1M tokens"
