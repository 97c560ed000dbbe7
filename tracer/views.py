"""The OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/metrics`.

It authenticates (an API key with the ingest scope), applies the rate limits (tracer/ratelimit.py),
validates and stores the raw body in one transaction, then answers. All per-span work happens
later in the ingest worker (tracer/ingest.py); metrics become GPU samples in the GPU worker
(tracer/gpu/metrics.py). Both signals share one path (`_receive`): the same auth, scope, rate
limits, content types, size limits, error codes and durability.
"""

from __future__ import annotations

import logging
from typing import Protocol

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from tracer import ingest, otlp, ratelimit
from tracer.gpu import metrics
from tracer.models import ApiKey, Project
from tracer.projects import apikey_authenticate

log = logging.getLogger(__name__)


def _answer(status: int, message: str, *, content_type: str, retry_after: int | None = None) -> HttpResponse:
    body, media = otlp.error_body(message, code=_RPC_CODES.get(status, 2), content_type=content_type)
    response = HttpResponse(body, status=status, content_type=media)
    if status == 503:
        response["Retry-After"] = str(settings.OCTOTRACE_RETRY_AFTER_SECONDS)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


# google.rpc.Code for each HTTP status we answer with.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 503: 14}


def request_secret(request: HttpRequest) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("X-Octotrace-Key", "").strip()


class _Accept(Protocol):
    def __call__(
        self, *, project: Project, body: bytes, content_type: str, content_encoding: str, user_agent: str
    ) -> object: ...


@csrf_exempt
@require_POST
def otlp_traces(request: HttpRequest) -> HttpResponse:
    return _receive(request, accept=ingest.batch_accept, counts_spans=True)


@csrf_exempt
@require_POST
def otlp_metrics(request: HttpRequest) -> HttpResponse:
    return _receive(request, accept=metrics.metrics_batch_accept, counts_spans=False)


def _receive(request: HttpRequest, *, accept: _Accept, counts_spans: bool) -> HttpResponse:
    """Authenticate, check the key's scope and rate limits, durably store one OTLP request body
    with `accept`, then answer. `counts_spans`: charge the stored batch's spans to the spans/s limits."""
    content_type = request.headers.get("Content-Type", "")
    try:
        key = apikey_authenticate(secret=request_secret(request))
    except (OperationalError, InterfaceError):
        log.warning("database unavailable while authenticating an OTLP request", exc_info=True)
        return _answer(503, "database unavailable, retry later", content_type=content_type)
    if key is None:
        return _answer(401, "missing, unknown or revoked API key", content_type=content_type)
    if not key.has_scope(ApiKey.Scope.INGEST):
        return _answer(
            403, "this API key has the read scope only: send telemetry with an ingest key", content_type=content_type
        )
    refusal = ratelimit.ingest_admit(key=key)
    if refusal is not None:
        return _answer(429, refusal.reason, content_type=content_type, retry_after=refusal.retry_after)

    if otlp.media_type(content_type) not in otlp.CONTENT_TYPES:
        return _answer(
            415,
            f"unsupported Content-Type {content_type!r}: use application/x-protobuf or application/json",
            content_type=otlp.JSON,
        )
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in otlp.ENCODINGS:
        return _answer(415, f"unsupported Content-Encoding {encoding!r}: use gzip", content_type=content_type)

    limit = settings.OCTOTRACE_MAX_BODY_BYTES
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return _answer(413, f"body of {declared} bytes exceeds the limit of {limit} bytes", content_type=content_type)
    body = request.read(limit + 1)
    if len(body) > limit:
        return _answer(413, f"body exceeds the limit of {limit} bytes", content_type=content_type)

    try:
        batch = accept(
            project=key.project,
            body=body,
            content_type=content_type,
            content_encoding=encoding,
            user_agent=request.headers.get("User-Agent", ""),
        )
    except otlp.BodyTooLarge as exc:
        return _answer(413, str(exc), content_type=content_type)
    except otlp.BadBody as exc:
        return _answer(400, str(exc), content_type=content_type)
    except (OperationalError, InterfaceError):
        log.warning("database unavailable while storing an OTLP batch", exc_info=True)
        return _answer(503, "database unavailable, retry later", content_type=content_type)
    if counts_spans and batch is not None:
        ratelimit.ingest_spans_charge(key=key, spans=batch.span_count)
    body, media = otlp.response_body(content_type=content_type)
    return HttpResponse(body, status=200, content_type=media)
