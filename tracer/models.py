"""Octotrace's data model: projects and their keys, raw ingest batches, traces and spans."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Rate-limit overrides (tracer/ratelimit.py, docs/security.md). NULL: the server's OCTOTRACE_RATE_*
    # setting; 0: no limit. The project figures bound all its keys together, the key figures each key.
    rate_ingest_rps = models.PositiveIntegerField(null=True, blank=True)
    rate_ingest_spans_per_s = models.PositiveIntegerField(null=True, blank=True)
    rate_read_per_min = models.PositiveIntegerField(null=True, blank=True)
    rate_key_ingest_rps = models.PositiveIntegerField(null=True, blank=True)
    rate_key_ingest_spans_per_s = models.PositiveIntegerField(null=True, blank=True)
    rate_key_read_per_min = models.PositiveIntegerField(null=True, blank=True)
    # Days of data kept (tracer/retention.py); NULL: the server's OCTOTRACE_RETENTION_DAYS.
    retention_days = models.PositiveIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name

    @property
    def retention_days_effective(self) -> int:
        return self.retention_days or settings.OCTOTRACE_RETENTION_DAYS


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"
        VIEWER = "viewer"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # One role per user and project; the project switcher reads memberships by user.
            models.UniqueConstraint(fields=["project", "user"], name="membership_project_user_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.project}"


KEY_PREFIX = "otk_"


def hash_key(secret: str) -> str:
    # Keys are 256-bit random tokens, so a fast unsalted hash is enough (no dictionary to attack).
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(models.Model):
    class Scope(models.TextChoices):
        # POST /v1/traces and /v1/metrics: what agent hosts hold.
        INGEST = "ingest"
        # The JSON API (/api/v1/...) and the CSV export API: what reads prompts, costs and prices.
        READ = "read"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    # The first characters of the secret, shown in lists so users can tell keys apart.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # What the key may do. New keys hold one scope; keys made before scopes existed hold both
    # (migration 0007: "legacy: ingest + read"), until an owner splits them.
    scope_ingest = models.BooleanField(default=True)
    scope_read = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.project})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def scopes(self) -> tuple[str, ...]:
        held = {self.Scope.INGEST: self.scope_ingest, self.Scope.READ: self.scope_read}
        return tuple(scope for scope, on in held.items() if on)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_legacy(self) -> bool:
        """Both scopes: a key from before scopes, which an owner should split in two."""
        return self.scope_ingest and self.scope_read

    @property
    def scope_label(self) -> str:
        return "legacy: ingest + read" if self.is_legacy else " + ".join(self.scopes) or "none"

    @staticmethod
    def new_secret() -> str:
        return KEY_PREFIX + secrets.token_urlsafe(32)


class AuditEvent(models.Model):
    """One change to a project that its owners may need to account for: who (a user, or nobody for a
    command or an API key) did what to which thing. Written by the services that make the change
    (tracer/audit.py), never edited."""

    class Action(models.TextChoices):
        KEY_CREATE = "key.create", "API key created"
        KEY_REVOKE = "key.revoke", "API key revoked"
        MEMBER_SAVE = "member.save", "Member added or role changed"
        MEMBER_REMOVE = "member.remove", "Member removed"
        PRICE_CREATE = "price.create", "Price override added"
        PRICE_DELETE = "price.delete", "Price override deleted"
        BUDGET_SET = "budget.set", "Budget set"
        BUDGET_DELETE = "budget.delete", "Budget removed"
        DATA_DELETE = "data.delete", "Data deleted on request"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    # NULL for a management command or an API key (details say which key); the user's name is kept in
    # actor_name, so the event still says who once the account is gone.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=20, choices=Action.choices)
    # What was acted on, in words ("key otk_abc… (ci)", "member bob", "trace 0af7…").
    target = models.TextField(blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # The audit page and its CSV: a project's events, newest first (filtered by action).
            models.Index(fields=["project", "-created_at"], name="auditevent_project_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target} by {self.actor_name or 'a command'}"


class StoredBatch(models.Model):
    """One OTLP request body exactly as received, kept until a worker has turned it into rows: the
    durable staging area of trace ingest (IngestBatch) and GPU metrics (GpuMetricsBatch). The
    lifecycle (accept, claim, fail, requeue, purge) is one service for both: tracer/batches.py."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        DONE = "done"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    # The body as received (still gzip-compressed if it came so).
    body = models.BinaryField()
    content_type = models.CharField(max_length=100)
    content_encoding = models.CharField(max_length=20, blank=True, default="")
    user_agent = models.CharField(max_length=300, blank=True, default="")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    # Claims so far; a batch claimed OCTOTRACE_BATCH_MAX_ATTEMPTS times is given up (failed).
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(default=timezone.now)
    # Last time a message for this batch was handed to the broker (the sweeper's clock).
    enqueued_at = models.DateTimeField(default=timezone.now)
    # Last claim: a batch processing since long ago lost its worker (the sweeper's other clock).
    started_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        indexes = [
            # The sweeper: unfinished batches whose last enqueue is older than the timeout.
            models.Index(
                fields=["enqueued_at"],
                name="%(class)s_unfinished_idx",
                condition=models.Q(status__in=["pending", "processing"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} {self.pk} ({self.status})"


class IngestBatch(StoredBatch):
    """An OTLP traces request: kept after processing, body included until the raw retention, so it
    can be replayed after a normalization fix."""

    body_size = models.PositiveIntegerField(default=0)
    body_purged_at = models.DateTimeField(null=True, blank=True)
    span_count = models.PositiveIntegerField(default=0)
    trace_count = models.PositiveIntegerField(default=0)

    class Meta(StoredBatch.Meta):
        verbose_name_plural = "ingest batches"
        indexes = [
            *StoredBatch.Meta.indexes,
            # Raw-body purge: processed batches by age.
            models.Index(fields=["status", "processed_at"], name="batch_status_processed_idx"),
            # Admin, and `replay --project/--since` (received_at).
            models.Index(fields=["project", "received_at"], name="batch_project_received_idx"),
        ]


class Trace(models.Model):
    """One trace with its rollups, recomputed from its spans after every batch that touches it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="traces", db_index=False)
    trace_id = models.CharField(max_length=32)
    root_span_id = models.CharField(max_length=16, blank=True, default="")
    root_span_name = models.TextField(blank=True, default="")
    session_id = models.CharField(max_length=200, blank=True, default="")
    service_name = models.CharField(max_length=200, blank=True, default="")
    start_time_unix_nano = models.BigIntegerField()
    end_time_unix_nano = models.BigIntegerField()
    # "error" when any span failed, else "ok".
    status = models.CharField(max_length=8, default="ok")
    span_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    # Rollups over billed spans (filled by the cost normalization; zero until spans carry usage).
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    # Sum of priced spans; NULL when no span is priced. unpriced_count says what is missing.
    cost = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    unpriced_count = models.PositiveIntegerField(default=0)
    # Data quality (tracer/tree.py `quality`), recomputed with the rest by every rollup.
    # Model calls billed (with usage), and model calls that came without usage (not priceable).
    billed_count = models.PositiveIntegerField(default=0)
    no_usage_count = models.PositiveIntegerField(default=0)
    # Spans point at parents that never arrived (distinct parent ids); cleared when they arrive.
    incomplete = models.BooleanField(default=False)
    missing_parents = models.PositiveIntegerField(default=0)
    # The instrumentation scope of the most model-call spans (tree.framework), e.g.
    # "openinference.instrumentation.langchain"; "" when no span names one.
    framework = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)
    # Sums of the spans' GPU attribution; NULL when no span of the trace has any.
    gpu_seconds = models.FloatField(null=True, blank=True)
    gpu_energy_wh = models.FloatField(null=True, blank=True)
    gpu_cost = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)

    class Meta:
        constraints = [
            # Ingest upserts trace rows on this key.
            models.UniqueConstraint(fields=["project", "trace_id"], name="trace_project_trace_uniq"),
        ]
        indexes = [
            # Trace list: newest first per project, and time-range filters.
            models.Index(fields=["project", "-start_time_unix_nano"], name="trace_project_start_idx"),
            # Session view: the traces of one conversation.
            models.Index(
                fields=["project", "session_id"], name="trace_project_session_idx", condition=~models.Q(session_id="")
            ),
            # Traces list filtered to incomplete traces (?incomplete=1), newest first: few traces
            # are incomplete, so a partial index stays small.
            models.Index(
                fields=["project", "-start_time_unix_nano"],
                name="trace_project_incomplete_idx",
                condition=models.Q(incomplete=True),
            ),
        ]

    def __str__(self) -> str:
        return f"trace {self.trace_id}"


class Span(models.Model):
    # No separate index on project: the unique constraint below starts with it.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    # "" for a root span.
    parent_span_id = models.CharField(max_length=16, blank=True, default="")
    name = models.TextField()
    # OTel SpanKind as on the wire: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    span_kind = models.PositiveSmallIntegerField(default=0)
    start_time_unix_nano = models.BigIntegerField()
    end_time_unix_nano = models.BigIntegerField()
    # OTel status code: 0 unset, 1 ok, 2 error.
    status_code = models.PositiveSmallIntegerField(default=0)
    status_message = models.TextField(blank=True, default="")
    service_name = models.CharField(max_length=200, blank=True, default="")
    scope_name = models.CharField(max_length=200, blank=True, default="")
    scope_version = models.CharField(max_length=100, blank=True, default="")
    resource_attributes = models.JSONField(default=dict)
    attributes = models.JSONField(default=dict)
    events = models.JSONField(default=list)
    links = models.JSONField(default=list)

    # Normalized columns, filled by the attribute normalization (tracer/semconv.py).
    # Database defaults too, since the COPY path of ingest writes only the columns it knows.
    kind = models.CharField(max_length=12, blank=True, default="", db_default="")
    agent_name = models.CharField(max_length=200, blank=True, default="", db_default="")
    model = models.CharField(max_length=200, blank=True, default="", db_default="")
    provider = models.CharField(max_length=100, blank=True, default="", db_default="")
    # gen_ai.conversation.id / session.id: groups the traces of one conversation into a session.
    session_id = models.CharField(max_length=200, blank=True, default="", db_default="")
    input_tokens = models.BigIntegerField(null=True, blank=True)
    output_tokens = models.BigIntegerField(null=True, blank=True)
    cached_input_tokens = models.BigIntegerField(null=True, blank=True)
    cache_write_tokens = models.BigIntegerField(null=True, blank=True)
    reasoning_tokens = models.BigIntegerField(null=True, blank=True)
    total_tokens = models.BigIntegerField(null=True, blank=True)
    # True on the one span per model call whose usage is billed (no double counting).
    billed = models.BooleanField(default=False, db_default=False)
    cost = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    reported_cost = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    # GPU attribution (tracer/gpu/attribution.py): this call's share of the GPUs of the endpoint that
    # served it. NULL when no known endpoint served it or no GPU sample covers it.
    gpu_seconds = models.FloatField(null=True, blank=True)
    gpu_energy_wh = models.FloatField(null=True, blank=True)
    gpu_cost = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)

    class Meta:
        constraints = [
            # What makes ingest idempotent: a span delivered twice is one row.
            models.UniqueConstraint(fields=["project", "trace_id", "span_id"], name="span_project_trace_span_uniq"),
        ]
        # The unique constraint's index also serves "all spans of a trace" (trace detail, rollups).
        indexes = [
            # Spans by time within a project: GPU attribution (the calls overlapping a window, with no
            # detour through their traces) and time-range reads of spans.
            models.Index(fields=["project", "start_time_unix_nano"], name="span_project_start_idx"),
        ]

    def __str__(self) -> str:
        return f"span {self.span_id} {self.name}"


class ModelPrice(models.Model):
    """USD per 1M tokens for the models matching `model_pattern`, from `valid_from` on.

    A row with a project overrides the defaults (project NULL) for that project. An empty
    provider matches any provider. Prices left NULL fall back: cached input and cache write to
    the input price, reasoning to the output price.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="prices")
    provider = models.CharField(max_length=100, blank=True, default="")
    # fnmatch pattern, lower case, matched against the model name with and without its "org/".
    model_pattern = models.CharField(max_length=200)
    input = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output = models.DecimalField(max_digits=12, decimal_places=6)
    reasoning = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    valid_from = models.DateField()
    source = models.TextField(blank=True, default="")
    source_date = models.DateField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            # syncprices upserts the shipped catalog on this key; one default per model and date.
            models.UniqueConstraint(
                fields=["provider", "model_pattern", "valid_from"],
                condition=models.Q(project__isnull=True),
                name="price_default_uniq",
            ),
            # One override per project, model and date.
            models.UniqueConstraint(
                fields=["project", "provider", "model_pattern", "valid_from"],
                condition=models.Q(project__isnull=False),
                name="price_project_uniq",
            ),
        ]

    def __str__(self) -> str:
        scope = f"{self.project} " if self.project_id else ""
        return f"{scope}{self.provider or '*'}/{self.model_pattern} from {self.valid_from}"


# --- GPU telemetry (tracer/gpu/) ------------------------------------------------------------


class GpuDevice(models.Model):
    """One physical GPU as NVML names it, seen by a sampler or an OTLP metrics exporter."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gpu_devices", db_index=False)
    host = models.CharField(max_length=255)
    # NVML's UUID ("GPU-8a5c..."): stable across reboots and index renumbering.
    uuid = models.CharField(max_length=100)
    index = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=200, blank=True, default="")
    memory_total_bytes = models.BigIntegerField(null=True, blank=True)
    mig_enabled = models.BooleanField(default=False)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Samples upsert their device on this key; the GPUs page lists a project's devices with it.
            models.UniqueConstraint(fields=["project", "uuid"], name="gpudevice_project_uuid_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.host} GPU {self.index} ({self.name})"


class GpuSample(models.Model):
    """One reading of one GPU. NULL fields were not available on that GPU (never zero)."""

    # The key is (device, time): a replayed metrics batch writes no sample twice, and its index serves
    # every read of samples (attribution, charts, downsampling: one device over a time range). No
    # surrogate id: it would cost a column and a second index on the biggest table (~30 B a row).
    pk = models.CompositePrimaryKey("device", "time_unix_nano")
    device = models.ForeignKey(GpuDevice, on_delete=models.CASCADE, related_name="samples", db_index=False)
    time_unix_nano = models.BigIntegerField()
    utilization_gpu = models.PositiveSmallIntegerField(null=True, blank=True)  # %
    utilization_memory = models.PositiveSmallIntegerField(null=True, blank=True)  # % (memory controller)
    memory_used_bytes = models.BigIntegerField(null=True, blank=True)
    power_mw = models.PositiveIntegerField(null=True, blank=True)
    # NVML's energy counter: mJ since the driver loaded (Volta and newer).
    energy_mj = models.BigIntegerField(null=True, blank=True)
    temperature_c = models.SmallIntegerField(null=True, blank=True)
    sm_clock_mhz = models.PositiveIntegerField(null=True, blank=True)
    # Per-process utilization where NVML gives it: [{"pid", "sm", "mem"}].
    processes = models.JSONField(null=True, blank=True)


class GpuSampleMinute(models.Model):
    """Samples older than OCTOTRACE_GPU_RAW_RETENTION_HOURS, rolled up per device and minute."""

    # Downsampling upserts on (device, minute); its index serves reads of one device over a range.
    pk = models.CompositePrimaryKey("device", "minute_unix_nano")
    device = models.ForeignKey(GpuDevice, on_delete=models.CASCADE, related_name="minutes", db_index=False)
    minute_unix_nano = models.BigIntegerField()
    sample_count = models.PositiveIntegerField()
    # Seconds of this minute covered by sample intervals (gaps in sampling are not covered).
    covered_seconds = models.FloatField(default=0)
    utilization_gpu_avg = models.FloatField(null=True, blank=True)
    utilization_gpu_max = models.PositiveSmallIntegerField(null=True, blank=True)
    utilization_memory_avg = models.FloatField(null=True, blank=True)
    memory_used_bytes_max = models.BigIntegerField(null=True, blank=True)
    power_mw_avg = models.FloatField(null=True, blank=True)
    power_mw_max = models.PositiveIntegerField(null=True, blank=True)
    # Energy of the intervals ending in this minute (counter deltas, else mean power x time).
    energy_j = models.FloatField(null=True, blank=True)
    temperature_c_max = models.SmallIntegerField(null=True, blank=True)
    sm_clock_mhz_avg = models.FloatField(null=True, blank=True)


class GpuMetricsBatch(StoredBatch):
    """An OTLP metrics request: its body is emptied once processed (the samples are the data) and
    the row deleted after the raw retention. A separate table so the trace ingest path and its
    sweeper never see metrics."""

    point_count = models.PositiveIntegerField(default=0)
    sample_count = models.PositiveIntegerField(default=0)

    class Meta(StoredBatch.Meta):
        verbose_name_plural = "GPU metrics batches"
        indexes = [
            *StoredBatch.Meta.indexes,
            # Pruning: finished batches by age.
            models.Index(fields=["received_at"], name="gpubatch_received_idx"),
        ]


class Endpoint(models.Model):
    """A self-hosted model deployment (a NIM behind a base URL) and the GPUs that serve it.

    LLM spans whose `server.address` (and `server.port`, when set here) match are attributed a
    share of these GPUs' time and energy.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="endpoints", db_index=False)
    name = models.CharField(max_length=200)
    base_url = models.CharField(max_length=500, blank=True, default="")
    server_address = models.CharField(max_length=255)
    # 0 = any port.
    server_port = models.PositiveIntegerField(default=0)
    devices = models.ManyToManyField(GpuDevice, related_name="endpoints", blank=True)
    # USD per GPU-hour; NULL = the default for the GPU model (tracer/data/gpu_prices.json).
    gpu_hour_price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    # USD per kWh, added on top of the GPU-hour price when set (owned hardware: amortization + power).
    electricity_kwh_price = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # One endpoint per address and port in a project; `gpuendpoint` upserts on it.
            models.UniqueConstraint(
                fields=["project", "server_address", "server_port"],
                name="endpoint_project_address_uniq",
            ),
        ]

    def __str__(self) -> str:
        port = f":{self.server_port}" if self.server_port else ""
        return f"{self.name} ({self.server_address}{port})"


class Message(models.Model):
    """One distinct captured message (a prompt or completion message, a system instruction, a content
    event's attributes) of a project, stored once however many calls re-send it (tracer/messages.py).
    Spans keep references in place of the text."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    # sha256 of `content` uncompressed (the message's canonical JSON, tracer.messages.canonical);
    # raw bytes, half the size of hex in the row and the index (spans name it in hex).
    hash = models.BinaryField(max_length=32)
    # zlib of the canonical JSON's UTF-8 bytes.
    content = models.BinaryField()
    # Bytes of the canonical JSON, uncompressed.
    size = models.PositiveIntegerField(default=0)
    # ceil(characters of its text / 4), the SDK's estimate (octotrace._fingerprint), computed once.
    tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Ingest inserts ON CONFLICT DO NOTHING on this key; readers fetch by (project, hash).
            models.UniqueConstraint(fields=["project", "hash"], name="message_project_hash_uniq"),
        ]

    def __str__(self) -> str:
        return f"message {bytes(self.hash).hex()[:12]}"


class MessageChain(models.Model):
    """One distinct ordered list prefix of messages: a list of n messages is the chain of its n
    prefixes, each naming its parent, so a span references a whole conversation by one hash and a
    60-turn session stores each prefix once instead of each call re-listing every earlier hash."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    # sha256 of "<parent hash hex>:<message hash hex>" (b"" parent for the first message); raw bytes.
    hash = models.BinaryField(max_length=32)
    parent = models.BinaryField(max_length=32, blank=True, default=b"")
    message = models.BinaryField(max_length=32)
    # Number of messages in the prefix (1 for the first).
    length = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Ingest inserts ON CONFLICT DO NOTHING on this key; the reader walks parents by it.
            models.UniqueConstraint(fields=["project", "hash"], name="messagechain_project_hash_uniq"),
        ]

    def __str__(self) -> str:
        return f"chain {bytes(self.hash).hex()[:12]} ({self.length})"
