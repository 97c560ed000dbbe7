"""ROI per workflow: what a successful run costs, what it is worth, and the trend by week.

A workflow is a trace's root span name. For the traces that started in the period:
- runs: traces; successful runs: traces whose status is ok, unless a span of the trace carries
  `octotrace.success` (the SDK's `octotrace.set_success()`), which then decides (any False wins);
- tokens: the traces' rollups (sums over billed spans); GPU cost: the traces' `gpu_cost` (GPU time
  attributed to calls our own GPUs served); API cost: the API price of the other billed calls
  (unpriced calls are counted, never read as $0). A self-hosted call counts its GPU cost, not
  also the API price of its tokens;
- cost = API cost + GPU cost; cost per successful run = cost / successful runs;
- value = the value per successful run the user entered for the workflow x successful runs;
- net value = value - cost; ROI % = net value / cost x 100.
Figures that cannot be computed (no successful run, no cost, no value entered) are None.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from reports.common import NO_ROOT, add, money, self_hosted_api_cost, unmoney, week_of
from reports.models import WorkflowValue
from tracer.models import Project, Span, Trace
from tracer.semconv import SUCCESS_KEYS

PROGRESS_EVERY = 2000
RATE_PLACES = Decimal("0.0001")
MONEY_PLACES = Decimal("0.000001")
PERCENT_PLACES = Decimal("0.01")

ROI_COLUMNS = (
    "workflow",
    "runs",
    "successful_runs",
    "success_rate",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "api_cost_usd",
    "unpriced_runs",
    "gpu_cost_usd",
    "cost_usd",
    "cost_per_successful_run_usd",
    "value_per_successful_run_usd",
    "value_usd",
    "net_value_usd",
    "roi_percent",
)


@dataclass(slots=True)
class _Tally:
    runs: int = 0
    successes: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    api_cost: Decimal | None = None
    gpu_cost: Decimal | None = None
    unpriced_runs: int = 0
    weeks: dict[date, _Tally] = field(default_factory=dict)

    def count(self, *, ok: bool, input_tokens: int, output_tokens: int, total_tokens: int, cost, gpu, unpriced) -> None:
        self.runs += 1
        self.successes += ok
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.total_tokens += total_tokens
        self.api_cost = add(self.api_cost, cost)
        self.gpu_cost = add(self.gpu_cost, gpu)
        self.unpriced_runs += unpriced > 0


def success_flag(attributes: dict[str, Any]) -> bool | None:
    """The run outcome a span declares, or None. Booleans, and the strings true/false."""
    for key in SUCCESS_KEYS:
        value = attributes.get(key)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    return None


def success_overrides(*, project: Project, traces: QuerySet[Trace]) -> dict[str, bool]:
    """trace_id -> the outcome its spans declare, for the traces where one does."""
    out: dict[str, bool] = {}
    spans = Span.objects.filter(project=project, trace_id__in=traces.values("trace_id"))
    for key in SUCCESS_KEYS:
        for trace_id, attributes in spans.filter(attributes__has_key=key).values_list("trace_id", "attributes"):
            flag = success_flag(attributes)
            if flag is not None:
                out[trace_id] = out.get(trace_id, True) and flag
    return out


def roi_compute(
    *,
    project: Project,
    traces: QuerySet[Trace],
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The ROI report of these traces (already filtered to the project and period), as JSON-ready
    data: money as decimal strings. `progress` is called with a percentage now and then."""
    overrides = success_overrides(project=project, traces=traces)
    self_hosted = self_hosted_api_cost(project=project, traces=traces)
    values = {v.workflow: v.value_usd for v in WorkflowValue.objects.filter(project=project)}
    total = traces.count()
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    fields = [
        "trace_id",
        "root_span_name",
        "status",
        "start_time_unix_nano",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cost",
        "unpriced_count",
        "gpu_cost",
    ]
    rows = traces.order_by().values_list(*fields).iterator(chunk_size=PROGRESS_EVERY)
    for done, row in enumerate(rows, 1):
        trace_id, name, status, start, inputs, outputs, tokens, cost, unpriced, gpu = row
        if cost is not None and trace_id in self_hosted:
            cost -= self_hosted[trace_id]
        ok = overrides.get(trace_id, status == "ok")
        workflow = name or NO_ROOT
        numbers = {
            "ok": ok,
            "input_tokens": inputs,
            "output_tokens": outputs,
            "total_tokens": tokens,
            "cost": cost,
            "gpu": gpu,
            "unpriced": unpriced,
        }
        tally = tallies[workflow]
        tally.count(**numbers)
        week = week_of(start)
        if week not in tally.weeks:
            tally.weeks[week] = _Tally()
        tally.weeks[week].count(**numbers)
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(min(99, done * 100 // max(total, 1)))

    workflows = [
        _figures(name, tally, values.get(name)) for name, tally in sorted(tallies.items(), key=lambda kv: kv[0])
    ]
    overall = _Tally()
    for tally in tallies.values():
        overall.runs += tally.runs
        overall.successes += tally.successes
        overall.input_tokens += tally.input_tokens
        overall.output_tokens += tally.output_tokens
        overall.total_tokens += tally.total_tokens
        overall.api_cost = add(overall.api_cost, tally.api_cost)
        overall.gpu_cost = add(overall.gpu_cost, tally.gpu_cost)
        overall.unpriced_runs += tally.unpriced_runs
    totals = _figures("all workflows", overall, None)
    # The value of all workflows is the sum of the values of those that have one.
    valued = [w for w in workflows if w["value_usd"] is not None]
    if valued:
        value = sum((Decimal(w["value_usd"]) for w in valued), Decimal(0))
        totals.update(_value_figures(value, _cost(overall)))
    weeks = [
        {"workflow": name, **_figures(name, week_tally, values.get(name)), "week": week.isoformat()}
        for name, tally in sorted(tallies.items(), key=lambda kv: kv[0])
        for week, week_tally in sorted(tally.weeks.items())
    ]
    if progress is not None:
        progress(100)
    return {"workflows": workflows, "totals": totals, "weeks": weeks}


def _cost(tally: _Tally) -> Decimal | None:
    return add(tally.api_cost, tally.gpu_cost)


def _value_figures(value: Decimal | None, cost: Decimal | None) -> dict[str, Any]:
    if value is None:
        return {"value_usd": None, "net_value_usd": None, "roi_percent": None}
    net = value - (cost or Decimal(0))
    roi = (net / cost * 100).quantize(PERCENT_PLACES) if cost else None
    return {"value_usd": money(value), "net_value_usd": money(net), "roi_percent": money(roi)}


def _figures(name: str, tally: _Tally, value_per_run: Decimal | None) -> dict[str, Any]:
    cost = _cost(tally)
    per_success = (cost / tally.successes).quantize(MONEY_PLACES) if cost is not None and tally.successes else None
    value = value_per_run * tally.successes if value_per_run is not None else None
    return {
        "workflow": name,
        "runs": tally.runs,
        "successful_runs": tally.successes,
        "success_rate": money((Decimal(tally.successes) / tally.runs).quantize(RATE_PLACES) if tally.runs else None),
        "input_tokens": tally.input_tokens,
        "output_tokens": tally.output_tokens,
        "total_tokens": tally.total_tokens,
        "api_cost_usd": money(tally.api_cost),
        "unpriced_runs": tally.unpriced_runs,
        "gpu_cost_usd": money(tally.gpu_cost),
        "cost_usd": money(cost),
        "cost_per_successful_run_usd": money(per_success),
        "value_per_successful_run_usd": money(value_per_run),
        **_value_figures(value, cost),
    }


def _csv_row(row: dict[str, Any]) -> list[Any]:
    # Numbers go out as numbers: money is stored as decimal strings, and a negative one would
    # otherwise be taken for a formula by the CSV guard and quoted as text.
    return [row["workflow"], *(unmoney(row[c]) if isinstance(row[c], str) else row[c] for c in ROI_COLUMNS[1:])]


def roi_csv_rows(*, result: dict[str, Any]) -> Iterator[list[Any]]:
    """The report's CSV: one row per workflow, the totals, then one row per workflow and week."""
    yield ["period", *ROI_COLUMNS]
    for row in result["workflows"]:
        yield ["all", *_csv_row(row)]
    yield ["all", *_csv_row(result["totals"])]
    for row in result["weeks"]:
        yield [f"week of {row['week']}", *_csv_row(row)]


def workflow_value_set(*, project: Project, workflow: str, value_usd: Decimal, user: Any = None) -> WorkflowValue:
    """Store what one successful run of `workflow` is worth (USD, not negative)."""
    if not value_usd.is_finite() or value_usd < 0:
        raise ValueError("the value per successful run must be a number of dollars, 0 or more")
    if not workflow:
        raise ValueError("name the workflow")
    value, _ = WorkflowValue.objects.update_or_create(
        project=project,
        workflow=workflow,
        defaults={"value_usd": value_usd.quantize(MONEY_PLACES), "updated_by": user, "updated_at": timezone.now()},
    )
    return value


def workflow_values(*, project: Project) -> dict[str, WorkflowValue]:
    """The values per successful run entered for the project's workflows, by workflow."""
    return {value.workflow: value for value in WorkflowValue.objects.filter(project=project)}


def workflow_value_delete(*, project: Project, workflow: str) -> None:
    WorkflowValue.objects.filter(project=project, workflow=workflow).delete()
