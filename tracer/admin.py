from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from tracer import ingest
from tracer.models import ApiKey, GpuDevice, IngestBatch, Membership, Project, Span, Trace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]
    fieldsets = [
        (None, {"fields": ["name", "slug", "created_at"]}),
        (
            "Retention",
            {
                "description": "Days of data kept; empty: the server's OCTOTRACE_RETENTION_DAYS (docs/deploy.md).",
                "fields": ["retention_days"],
            },
        ),
        (
            "Rate limits",
            {
                "description": "Empty: the server's OCTOTRACE_RATE_* setting; 0: no limit (docs/security.md).",
                "fields": [
                    ("rate_ingest_rps", "rate_key_ingest_rps"),
                    ("rate_ingest_spans_per_s", "rate_key_ingest_spans_per_s"),
                    ("rate_read_per_min", "rate_key_read_per_min"),
                ],
            },
        ),
    ]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "project", "scope_label", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["project", "scope_ingest", "scope_read"]
    # Keys are created with `manage.py createkey` or on the settings page (the secret is shown once
    # there); a key's scopes never widen: a legacy key is split there into an ingest and a read key.
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at", "scope_ingest", "scope_read"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(IngestBatch)
class IngestBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "attempts", "span_count", "trace_count", "received_at", "processed_at"]
    list_filter = ["status", "project"]
    exclude = ["body"]
    readonly_fields = [f.name for f in IngestBatch._meta.fields if f.name != "body"]
    actions = ["replay"]

    @admin.action(description="Replay the selected batches through the worker")
    def replay(self, request: HttpRequest, queryset: QuerySet[IngestBatch]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        ids = list(ingest.batches_for_replay(batch_ids=selected).values_list("pk", flat=True))
        for batch_id in ids:
            ingest.batch_replay(batch_id=batch_id, inline=False)
        messages.info(request, f"{len(ids)} batch(es) re-enqueued; batches whose body was purged are skipped.")


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin):
    list_display = ["trace_id", "project", "root_span_name", "span_count", "status", "incomplete", "cost"]
    list_filter = ["project", "status", "incomplete"]
    search_fields = ["trace_id", "root_span_name"]


@admin.register(Span)
class SpanAdmin(admin.ModelAdmin):
    list_display = ["span_id", "trace_id", "name", "kind", "model", "project"]
    list_filter = ["project"]
    search_fields = ["trace_id", "span_id", "name"]
    show_full_result_count = False


@admin.register(GpuDevice)
class GpuDeviceAdmin(admin.ModelAdmin):
    list_display = ["host", "index", "name", "uuid", "project", "mig_enabled", "last_seen_at"]
    list_filter = ["project", "host"]
    # Devices come from samples (the sampler or an OTLP exporter); what identifies them is not edited.
    # Endpoints are mapped with `manage.py gpuendpoint`, which checks the GPUs are the project's
    # (an admin form would offer every project's GPUs).
    readonly_fields = ["project", "host", "uuid", "index", "memory_total_bytes", "first_seen_at", "last_seen_at"]
