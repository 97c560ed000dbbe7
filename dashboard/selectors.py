"""The dashboard's reads: one function per page, a fixed number of queries each (pinned in tests)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from dashboard import charts
from dashboard.filters import NS, TimeRange
from reports.usage import TOKEN_SUMS
from tracer import messages, tree
from tracer.api import BadParameter, traces_filtered
from tracer.models import Project, Span, Trace

HOUR_NS = 3600 * NS
DAY_NS = 24 * HOUR_NS


def _bucket_ns(time_range: TimeRange) -> int:
    seconds = time_range.seconds
    return HOUR_NS if seconds is not None and seconds <= 2 * 86_400 else DAY_NS


def _percentiles(traces, count: int, fractions: tuple[float, ...]) -> list[int | None]:
    """Percentiles of trace duration (nearest rank), computed in the database: one
    percentile_disc query on PostgreSQL, one ordered offset query per fraction elsewhere."""
    if count == 0:
        return [None] * len(fractions)
    durations = traces.annotate(duration=F("end_time_unix_nano") - F("start_time_unix_nano"))
    if connection.vendor == "postgresql":
        sql, params = durations.values("duration").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY duration) FROM ({sql}) AS d",
                [list(fractions), *params],
            )
            return list(cursor.fetchone()[0])
    # percentile_disc's rank: the first value whose cumulative share reaches the fraction.
    ranks = [max(0, math.ceil(f * count) - 1) for f in fractions]
    return [durations.order_by("duration").values_list("duration", flat=True)[rank] for rank in ranks]


# --- Overview ---------------------------------------------------------------------------------


def overview(*, project: Project, time_range: TimeRange) -> dict[str, Any]:
    traces = time_range.filter(Trace.objects.filter(project=project))
    stats = traces.aggregate(
        trace_count=Count("pk"),
        error_traces=Count("pk", filter=Q(status="error")),
        span_count=Sum("span_count", default=0),
        cost=Sum("cost"),
        gpu_cost=Sum("gpu_cost"),
        unpriced_count=Sum("unpriced_count", default=0),
        **TOKEN_SUMS,
    )
    count = stats["trace_count"]
    stats["cost_per_trace"] = stats["cost"] / count if count and stats["cost"] is not None else None
    stats["error_rate"] = stats["error_traces"] / count if count else None
    stats["p50_ns"], stats["p95_ns"] = _percentiles(traces, count, (0.50, 0.95))

    bucket_ns = _bucket_ns(time_range)
    # One pass over the billed spans of the range, grouped by time bucket, model and agent; the
    # three charts are sums of these groups.
    groups = list(
        time_range.filter(Span.objects.filter(project=project, billed=True))
        .annotate(bucket=F("start_time_unix_nano") / bucket_ns)
        .values("bucket", "model", "agent_name")
        .annotate(c=Sum("cost"), **TOKEN_SUMS)
        .order_by()
    )
    by_model: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    by_agent: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    tokens: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(tree.TOKEN_FIELDS, 0))
    for g in groups:
        by_model[g["bucket"], g["model"]] += g["c"] or 0
        by_agent[g["bucket"], g["agent_name"]] += g["c"] or 0
        for name in tree.TOKEN_FIELDS:
            tokens[g["agent_name"]][name] += g[name]
    top = sorted(tokens.items(), key=lambda kv: (-kv[1]["input_tokens"], kv[0]))[:20]
    figures = {
        "cost_by_model": charts.stacked_bars(
            ((b, m, c) for (b, m), c in by_model.items()), bucket_ns=bucket_ns, title="Cost by model", unit="USD"
        ),
        "cost_by_agent": charts.stacked_bars(
            ((b, a, c) for (b, a), c in by_agent.items()), bucket_ns=bucket_ns, title="Cost by agent", unit="USD"
        ),
        "tokens_by_agent": charts.bars(
            [agent or "(no agent)" for agent, _ in top],
            {
                "input (uncached)": [t["input_tokens"] - t["cached_input_tokens"] for _, t in top],
                "cached input": [t["cached_input_tokens"] for _, t in top],
                "output": [t["output_tokens"] - t["reasoning_tokens"] for _, t in top],
                "reasoning": [t["reasoning_tokens"] for _, t in top],
            },
            title="Tokens by agent",
            unit="tokens",
        ),
    }
    return {"stats": stats, "figures": figures, "quality": frameworks_quality(traces=traces)}


@dataclass(frozen=True, slots=True)
class FrameworkQuality:
    """How whole the data of one framework's traces is (one row of the overview's table)."""

    framework: str
    traces: int
    incomplete: int
    # Model calls: billed ones (with usage, priced or not) and those without usage.
    billed: int
    no_usage: int
    unpriced: int
    cost: Decimal | None

    @property
    def calls(self) -> int:
        return self.billed + self.no_usage

    @staticmethod
    def _share(part: int, whole: int) -> Fraction | None:
        return Fraction(part, whole) if whole else None

    @property
    def no_usage_share(self) -> Fraction | None:
        return self._share(self.no_usage, self.calls)

    @property
    def unpriced_share(self) -> Fraction | None:
        """Of all model calls: with the calls without usage, these are the calls with no cost."""
        return self._share(self.unpriced, self.calls)

    @property
    def incomplete_share(self) -> Fraction | None:
        return self._share(self.incomplete, self.traces)


def frameworks_quality(*, traces) -> list[FrameworkQuality]:
    """Per framework (Trace.framework), over the given traces: model calls without usage, unpriced
    calls and incomplete traces. One query, grouped in the database, whatever the number of
    frameworks; most traces first."""
    rows = (
        traces.values("framework")
        .annotate(
            n=Count("pk"),
            n_incomplete=Count("pk", filter=Q(incomplete=True)),
            n_billed=Sum("billed_count", default=0),
            n_no_usage=Sum("no_usage_count", default=0),
            n_unpriced=Sum("unpriced_count", default=0),
            total_cost=Sum("cost"),
        )
        .order_by("-n", "framework")
    )
    return [
        FrameworkQuality(
            framework=row["framework"],
            traces=row["n"],
            incomplete=row["n_incomplete"],
            billed=row["n_billed"],
            no_usage=row["n_no_usage"],
            unpriced=row["n_unpriced"],
            cost=row["total_cost"],
        )
        for row in rows
    ]


# --- Traces list ------------------------------------------------------------------------------

TRACE_SORTS = {
    "start": "start_time_unix_nano",
    "cost": "cost",
    "duration": "duration",
    "tokens": "total_tokens",
    "spans": "span_count",
}
PAGE_SIZE = 50


@dataclass
class TraceList:
    page: Page
    agents: dict[str, list[str]] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    sort: str = "-start"


def traces_page(*, project: Project, time_range: TimeRange, params: Any) -> TraceList:
    """Raises tracer.api.BadParameter on a bad filter value."""
    filters = {k: v for k, v in params.items() if k not in ("from", "to")}
    traces = time_range.filter(traces_filtered(project=project, params=filters))
    sort = params.get("sort", "-start")
    column = TRACE_SORTS.get(sort.lstrip("-"))
    if column is None:
        raise BadParameter(f"sort={sort!r}: use one of {', '.join(TRACE_SORTS)} (prefix - for descending)")
    # Unpriced (NULL cost) traces sort below priced ones either way; NOT NULL columns keep the
    # plain order so the (project, -start) index serves the default sort.
    if sort.startswith("-"):
        order = F(column).desc(nulls_last=True) if column == "cost" else F(column).desc()
    else:
        order = F(column).asc(nulls_last=True) if column == "cost" else F(column).asc()
    traces = traces.annotate(duration=F("end_time_unix_nano") - F("start_time_unix_nano")).order_by(order, "-pk")
    page = Paginator(traces, PAGE_SIZE).get_page(params.get("page"))
    ids = [t.trace_id for t in page.object_list]
    agents: dict[str, list[str]] = {}
    rows = (
        Span.objects.filter(project=project, trace_id__in=ids, kind="agent")
        .exclude(agent_name="")
        .values_list("trace_id", "agent_name")
        .distinct()
        .order_by("trace_id", "agent_name")
    )
    for trace_id, agent in rows:
        agents.setdefault(trace_id, []).append(agent)
    roots = list(
        time_range.filter(Trace.objects.filter(project=project))
        .exclude(root_span_name="")
        .values_list("root_span_name", flat=True)
        .distinct()
        .order_by("root_span_name")[:200]
    )
    return TraceList(page=page, agents=agents, roots=roots, sort=sort)


# --- Trace detail -----------------------------------------------------------------------------

# Spans read for the tree; attributes are read only for the one span shown in the side panel.
TREE_FIELDS = (
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "agent_name",
    "model",
    "provider",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "status_message",
    *tree.TOKEN_FIELDS,
    "billed",
    "cost",
)
# The tree opens this many levels deep, with at most this many rows; the rest expands on demand,
# a page of children at a time, so a 10,000-span trace opens as fast as a small one renders.
OPEN_DEPTH = 4
ROW_BUDGET = 300
CHILD_PAGE = 100


@dataclass(slots=True)
class Row:
    node: tree.Node | None
    own: dict[str, Any] | None = None
    subtree: dict[str, Any] | None = None
    expanded: bool = False
    left: float = 0.0
    width: float = 0.0
    # A "more" row: the parent whose children continue, and from which offset.
    more_parent: str = ""
    more_offset: int = 0
    more_count: int = 0

    @property
    def span(self) -> dict[str, Any]:
        return self.node.span if self.node else {}

    @property
    def duration_ns(self) -> int:
        return self.span["end_time_unix_nano"] - self.span["start_time_unix_nano"]

    @property
    def unpriced(self) -> bool:
        return bool(self.node and self.node.billed and self.span.get("cost") is None)

    @property
    def error(self) -> bool:
        return self.span.get("status_code") == 2


@dataclass
class TraceView:
    trace: Trace
    forest: tree.Forest
    sums: dict[str, tuple[dict[str, Any], dict[str, Any]]]
    start_ns: int
    span_ns: int

    @cached_property
    def breakdowns(self) -> dict[str, Any]:
        """Totals by agent, model and kind: the full page shows them, an expand does not need them."""
        return tree.breakdowns(self.forest)

    def rows(self, nodes: list[tree.Node], *, parent_id: str = "", offset: int = 0, open_depth: int) -> list[Row]:
        """Rows in tree order for `nodes` (siblings, from `offset`), expanded `open_depth` levels
        below them while the row budget lasts."""
        out: list[Row] = []
        stack: list[Row | tree.Node] = list(reversed(self._page(nodes, parent_id, offset)))
        base = nodes[0].depth if nodes else 0
        while stack:
            item = stack.pop()
            if isinstance(item, Row):
                out.append(item)
                continue
            node = item
            expanded = bool(node.children) and node.depth - base < open_depth - 1 and len(out) < ROW_BUDGET
            out.append(self._row(node, expanded))
            if expanded:
                stack.extend(reversed(self._page(node.children, node.span_id, 0)))
        return out

    def _page(self, nodes: list[tree.Node], parent_id: str, offset: int) -> list[Row | tree.Node]:
        page: list[Row | tree.Node] = list(nodes[offset : offset + CHILD_PAGE])
        rest = len(nodes) - offset - CHILD_PAGE
        if rest > 0:
            page.append(Row(node=None, more_parent=parent_id, more_offset=offset + CHILD_PAGE, more_count=rest))
        return page

    def _row(self, node: tree.Node, expanded: bool) -> Row:
        own, subtree = self.sums[node.span_id]
        span = node.span
        left = (span["start_time_unix_nano"] - self.start_ns) / self.span_ns * 100
        width = (span["end_time_unix_nano"] - span["start_time_unix_nano"]) / self.span_ns * 100
        return Row(
            node=node,
            own=own,
            subtree=subtree,
            expanded=expanded,
            left=round(min(max(left, 0.0), 100.0), 3),
            width=round(min(max(width, 0.2), 100.0), 3),
        )

    def children_of(self, span_id: str) -> list[tree.Node]:
        if span_id == "":
            return self.forest.roots
        node = self.forest.nodes.get(span_id)
        if node is None:
            raise KeyError(span_id)
        return node.children


class TreeCache:
    """The built trees of recently viewed traces, in this process, so an expand does not rebuild one.

    A tree is valid while its trace row's `updated_at` is unchanged: every write to a trace's spans
    (ingest, replay, reprice, GPU attribution) rewrites that row's rollups and `updated_at` in the same
    transaction. Bounded by the number of spans held (least recently used out first); no pickling, so
    a hit costs a dictionary lookup. Each web process keeps its own.
    """

    def __init__(self, *, max_spans: int) -> None:
        self.max_spans = max_spans
        self._views: OrderedDict[tuple[int, str], TraceView] = OrderedDict()
        self._spans = 0
        self._lock = threading.Lock()

    def get(self, trace: Trace) -> TraceView | None:
        key = (trace.project_id, trace.trace_id)
        with self._lock:
            view = self._views.get(key)
            if view is None or view.trace.updated_at != trace.updated_at:
                return None
            self._views.move_to_end(key)
            return view

    def put(self, view: TraceView) -> None:
        size = len(view.forest.nodes)
        if size > self.max_spans:
            return
        key = (view.trace.project_id, view.trace.trace_id)
        with self._lock:
            old = self._views.pop(key, None)
            if old is not None:
                self._spans -= len(old.forest.nodes)
            self._views[key] = view
            self._spans += size
            while self._spans > self.max_spans:
                _, evicted = self._views.popitem(last=False)
                self._spans -= len(evicted.forest.nodes)

    def clear(self) -> None:
        with self._lock:
            self._views.clear()
            self._spans = 0


TREES = TreeCache(max_spans=settings.OCTOTRACE_TREE_CACHE_SPANS)


def trace_view(*, project: Project, trace_id: str) -> TraceView | None:
    trace = Trace.objects.filter(project=project, trace_id=trace_id.lower()).first()
    if trace is None:
        return None
    cached = TREES.get(trace)
    if cached is not None:
        return cached
    view = _trace_view_build(project=project, trace=trace)
    TREES.put(view)
    return view


def _trace_view_build(*, project: Project, trace: Trace) -> TraceView:
    spans = Span.objects.filter(project=project, trace_id=trace.trace_id).values(*TREE_FIELDS)
    forest = tree.build(spans)
    # Orphans hang under one "missing parent" row instead of posing as extra roots.
    tree.adopt_orphans(forest)
    start = min((n.span["start_time_unix_nano"] for n in forest.nodes.values()), default=trace.start_time_unix_nano)
    end = max((n.span["end_time_unix_nano"] for n in forest.nodes.values()), default=trace.end_time_unix_nano)
    return TraceView(
        trace=trace,
        forest=forest,
        sums=tree.node_totals(forest),
        start_ns=start,
        span_ns=max(end - start, 1),
    )


def span_detail(*, project: Project, trace_id: str, span_id: str) -> Span | None:
    """One span, its attributes and events as received (messages put back from the message store)."""
    span = Span.objects.filter(project=project, trace_id=trace_id.lower(), span_id=span_id.lower()).first()
    if span is not None:
        messages.spans_restore(project_id=project.pk, spans=[span])
    return span


# Attributes that hold captured prompts and completions, by convention.
_PROMPT_KEYS = ("gen_ai.input.messages", "gen_ai.system_instructions", "input.value", "gen_ai.prompt")
_COMPLETION_KEYS = ("gen_ai.output.messages", "output.value", "gen_ai.completion")
_PROMPT_EVENTS = ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message")
_COMPLETION_EVENTS = ("gen_ai.choice",)


def span_content(span: Span) -> dict[str, list[tuple[str, str]]]:
    """Captured prompt and completion text, from attributes (OTel GenAI, OpenInference, OpenLLMetry's
    indexed `gen_ai.prompt.N.*`, `llm.input_messages.N.*`) and from the older GenAI events."""
    prompt: list[tuple[str, str]] = []
    completion: list[tuple[str, str]] = []
    for key, value in sorted(span.attributes.items()):
        text = value if isinstance(value, str) else str(value)
        if key.startswith(_PROMPT_KEYS) or key.startswith("llm.input_messages."):
            prompt.append((key, text))
        elif key.startswith(_COMPLETION_KEYS) or key.startswith("llm.output_messages."):
            completion.append((key, text))
    for event in span.events or []:
        name = event.get("name", "")
        body = event.get("attributes") or {}
        text = "\n".join(f"{k}: {v}" for k, v in sorted(body.items()))
        if name in _PROMPT_EVENTS:
            prompt.append((name, text))
        elif name in _COMPLETION_EVENTS:
            completion.append((name, text))
    return {"prompt": prompt, "completion": completion}


def unpriced_models(*, project: Project, days: int = 30) -> list[dict[str, Any]]:
    """Models of billed calls that had no price in the last `days` days, most calls first."""
    since = int((timezone.now() - timedelta(days=days)).timestamp()) * NS
    return list(
        Span.objects.filter(project=project, billed=True, cost__isnull=True, start_time_unix_nano__gte=since)
        .exclude(model="")
        .values("provider", "model")
        .annotate(calls=Count("pk"), tokens=Sum("total_tokens", default=0))
        .order_by("-calls", "model")[:50]
    )
