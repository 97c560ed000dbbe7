"""The reports' part of the read API: `GET /api/v1/export/<kind>.csv` (docs/api.md, docs/reports.md).

Authenticated and filtered like `GET /api/v1/traces` (tracer/api.py), streamed as CSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from reports import exports
from tracer.api import BadParameter, datetime_ns, request_project, traces_filtered


def csv_response(rows: Iterator[list[Any]], filename: str) -> StreamingHttpResponse:
    """Rows streamed as a CSV download (the export API, and the dashboard's CSV buttons)."""
    response = StreamingHttpResponse(exports.csv_stream(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
def api_export(request: HttpRequest, kind: str) -> StreamingHttpResponse | JsonResponse:
    """`GET /api/v1/export/<kind>.csv`: authenticated and filtered like `GET /api/v1/traces`
    (from/to are ISO datetimes; agents, models and daily cover the calls started between them)."""
    project = request_project(request)
    if isinstance(project, JsonResponse):
        return project
    params = request.GET
    try:
        rows = exports.export_rows(
            kind=kind,
            project=project,
            traces=traces_filtered(project=project, params=params),
            start_ns=datetime_ns("from", params["from"]) if params.get("from") else None,
            end_ns=datetime_ns("to", params["to"]) if params.get("to") else None,
            sort=params.get("sort", ""),
        )
    except (BadParameter, exports.UnknownExport) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return csv_response(rows, exports.export_filename(kind=kind, project=project))
