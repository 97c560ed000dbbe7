"""The message store: each captured message stored once per project, spans keep references.

Agents re-send their whole conversation on every call, so with content capture on a span table
holds the same system prompt and history once per call (quadratic in the turns). On ingest,
`span_split` finds the messages wherever a convention carries them:

- JSON strings holding a list of objects: `gen_ai.input.messages`, `gen_ai.output.messages`,
  `gen_ai.system_instructions`, the older `gen_ai.prompt` / `gen_ai.completion`, and
  `input.value` / `output.value` when they hold such a list;
- flattened keys, one group per message: OpenInference `llm.input_messages.N.*` /
  `llm.output_messages.N.*`, OpenLLMetry `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`;
- span events named `gen_ai.*` (the older GenAI content events): their attributes.

Each message is stored once (`Message`, keyed by the sha256 of its canonical JSON), and each
ordered list as a chain of prefixes (`MessageChain`), so a span names a whole conversation by one
hash and the prefix a call shares with the previous one is stored once. The span keeps, under the
reserved attribute `$octo_msgs`, what is needed to rebuild the original values exactly: the chain
head, the JSON formatting of a string (checked at ingest by rebuilding it: a string we could not
rebuild byte for byte is left as it was), the flattened key names. `spans_restore` reassembles the
attributes and events of many spans in two queries. What does not parse as messages stays as it was.

Canonical JSON here is compact JSON with the keys in the order sent (not sorted): the order is part
of what must come back, and one instrumentation always writes a message the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection
from django.utils import timezone

from tracer.models import Message, MessageChain

MARKER = "$octo_msgs"
JSON_KEYS = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt",
    "gen_ai.completion",
    "input.value",
    "output.value",
)
FLAT_PREFIXES = ("llm.input_messages.", "llm.output_messages.", "gen_ai.prompt.", "gen_ai.completion.")
_FLAT = re.compile("(" + "|".join(re.escape(p) for p in FLAT_PREFIXES) + r")(\d+)\.(.+)", re.S)
# The ways of writing a JSON list that `json.dumps` reproduces: (item separator, key separator,
# ensure_ascii). The index is what a span keeps; the first is Python's default (most SDKs).
_FORMATS = ((", ", ": ", True), (",", ":", True), (", ", ": ", False), (",", ":", False))
_EVENT_PREFIX = "gen_ai."
SINGLE = "="


def canonical(value: Any) -> str:
    """Compact JSON, keys in their order, written by orjson (ten times faster than json); what it
    refuses (NaN, lone surrogates, integers past 64 bits) by json, deterministically for a given
    message. The text is what is stored and hashed; a value is written back in its original
    spelling by `_dumps` (checked at ingest), so the two may spell a float differently."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, UnicodeDecodeError):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # NaN, lone surrogates and the like: json reads them, and writes them back the same.
        return json.loads(text)


def _dumps(value: Any, fmt: int) -> str:
    item, key, ascii_only = _FORMATS[fmt]
    return json.dumps(value, ensure_ascii=ascii_only, separators=(item, key))


def _encode(text: str) -> bytes:
    # JSON decoded from a string attribute may hold lone surrogates ("\ud800"); keep them.
    return text.encode("utf-8", "surrogatepass")


def token_estimate(text: str) -> int:
    """The SDK's estimate (octotrace._fingerprint): a token per four characters, rounded up."""
    return math.ceil(len(text) / 4) if text else 0


def _text_of(value: Any) -> str:
    """The text a message carries: its string leaves, joined (what a model reads, roughly)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "".join(_text_of(v) for v in value.values())
    if isinstance(value, list):
        return "".join(_text_of(v) for v in value)
    return ""


@dataclass(slots=True)
class Store:
    """The messages and chain prefixes a batch's spans reference, by hash (written by `store_write`)."""

    messages: dict[str, tuple[str, Any]] = field(default_factory=dict)
    chains: dict[str, tuple[str, str, int]] = field(default_factory=dict)

    def message(self, value: Any) -> str:
        text = canonical(value)
        digest = hashlib.sha256(_encode(text)).hexdigest()
        if digest not in self.messages:
            self.messages[digest] = (text, value)
        return digest

    def chain(self, hashes: list[str]) -> str:
        """The head of the chain of these messages; a single message is referenced as itself
        ("=" + its hash): an answer's one-message list needs no chain row."""
        if len(hashes) == 1:
            return SINGLE + hashes[0]
        parent = ""
        for length, message in enumerate(hashes, 1):
            node = hashlib.sha256(f"{parent}:{message}".encode()).hexdigest()
            if node not in self.chains:
                self.chains[node] = (parent, message, length)
            parent = node
        return parent


# --- Ingest: split ----------------------------------------------------------------------------


def span_split(
    *, attributes: dict[str, Any], events: list[dict[str, Any]], store: Store
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The span's attributes and events with their messages replaced by references into `store`."""
    return _attributes_split(attributes, store), _events_split(events, store)


def _attributes_split(attributes: dict[str, Any], store: Store) -> dict[str, Any]:
    marker: dict[str, Any] = {}
    removed: set[str] = set()
    if MARKER in attributes:
        # A sender's own attribute of that name comes back as it was.
        marker["x"] = attributes[MARKER]
        removed.add(MARKER)
    for key in JSON_KEYS:
        value = attributes.get(key)
        if isinstance(value, str):
            ref = _json_split(value, store)
            if ref is not None:
                marker.setdefault("j", {})[key] = ref
                removed.add(key)
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for key, value in attributes.items():
        if key.startswith(FLAT_PREFIXES):
            match = _FLAT.fullmatch(key)
            if match:
                groups.setdefault(match[1], {}).setdefault(match[2], {})[match[3]] = value
                removed.add(key)
    for prefix, by_index in groups.items():
        indexes = sorted(by_index, key=lambda i: (int(i), i))
        head = store.chain([store.message(by_index[i]) for i in indexes])
        plain = indexes == [str(i) for i in range(len(indexes))]
        marker.setdefault("f", {})[prefix] = [len(indexes) if plain else indexes, head]
    if not marker:
        return attributes
    kept = {key: value for key, value in attributes.items() if key not in removed}
    kept[MARKER] = marker
    return kept


def _json_split(value: str, store: Store) -> list | None:
    """[chain head, format] for a JSON list of objects, or [chain head, format, rest] for a JSON
    request object with a `messages` list (OpenInference's `input.value`; the rest, tools and
    all, is stored as a message too), when we can write it back byte for byte; else None."""
    if not value.startswith(("[{", "{")):
        return None
    try:
        parsed = _loads(value)
    except (ValueError, RecursionError):
        return None
    rest = None
    items = parsed
    if isinstance(parsed, dict):
        items = parsed.get("messages")
        rest = {**parsed, "messages": None}
    if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
        return None
    for fmt in range(len(_FORMATS)):
        if _dumps(parsed, fmt) == value:
            head = store.chain([store.message(item) for item in items])
            return [head, fmt] if rest is None else [head, fmt, store.message(rest)]
    return None


def _events_split(events: list[dict[str, Any]], store: Store) -> list[dict[str, Any]]:
    if not events:
        return events
    out = []
    for event in events:
        attributes = event.get("attributes") or {}
        if MARKER in attributes:
            event = {**event, "attributes": {MARKER: {"x": attributes}}}
        elif attributes and str(event.get("name", "")).startswith(_EVENT_PREFIX):
            event = {**event, "attributes": {MARKER: store.message(attributes)}}
        out.append(event)
    return out


def store_write(*, project_id: int, store: Store) -> None:
    """Insert the messages and chain prefixes not stored yet: per table, one query to learn which
    exist (most do: a call re-sends its history), then one INSERT .. ON CONFLICT DO NOTHING of the
    rest (a concurrent batch may insert the same ones). Rows go in hash order, so two batches
    inserting overlapping rows lock them in one order."""
    now = timezone.now()
    new = _missing(Message, project_id, store.messages)
    if new:
        rows = []
        for digest in new:
            text, value = store.messages[digest]
            data = _encode(text)
            rows.append(
                Message(
                    project_id=project_id,
                    hash=bytes.fromhex(digest),
                    content=zlib.compress(data),
                    size=len(data),
                    tokens=token_estimate(_text_of(value)),
                    created_at=now,
                )
            )
        Message.objects.bulk_create(rows, ignore_conflicts=True)
    new = _missing(MessageChain, project_id, store.chains)
    if new:
        rows = []
        for node in new:
            parent, message, length = store.chains[node]
            rows.append(
                MessageChain(
                    project_id=project_id,
                    hash=bytes.fromhex(node),
                    parent=bytes.fromhex(parent),
                    message=bytes.fromhex(message),
                    length=length,
                    created_at=now,
                )
            )
        MessageChain.objects.bulk_create(rows, ignore_conflicts=True)


def _missing(model: type[Message] | type[MessageChain], project_id: int, hashes: dict[str, Any]) -> list[str]:
    """The hashes (hex) not stored yet for the project, sorted."""
    if not hashes:
        return []
    stored = model.objects.filter(project_id=project_id, hash__in=[bytes.fromhex(h) for h in hashes])
    existing = {bytes(digest).hex() for digest in stored.values_list("hash", flat=True)}
    return sorted(h for h in hashes if h not in existing)


# --- Reads: restore ---------------------------------------------------------------------------


def _refs(attributes: Any, events: Any, heads: set[str], messages: set[str]) -> None:
    marker = attributes.get(MARKER) if isinstance(attributes, dict) else None
    if isinstance(marker, dict):
        for head, _, *rest in marker.get("j", {}).values():
            (messages if head.startswith(SINGLE) else heads).add(head.removeprefix(SINGLE))
            messages.update(rest)
        for _, head in marker.get("f", {}).values():
            (messages if head.startswith(SINGLE) else heads).add(head.removeprefix(SINGLE))
    for event in events or ():
        ref = (event.get("attributes") or {}).get(MARKER)
        if isinstance(ref, str):
            messages.add(ref)


def _chains_fetch(project_id: int, heads: set[str]) -> dict[str, list[str]]:
    """Each head's ordered message hashes, every prefix read in one recursive query."""
    if not heads:
        return {}
    table = connection.ops.quote_name(MessageChain._meta.db_table)
    placeholders = ", ".join(["%s"] * len(heads))
    parents: dict[str, tuple[str, str]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH RECURSIVE walk(hash, parent, message) AS ("
            f" SELECT hash, parent, message FROM {table} WHERE project_id = %s AND hash IN ({placeholders})"
            f" UNION"
            f" SELECT c.hash, c.parent, c.message FROM {table} c JOIN walk w"
            f" ON c.project_id = %s AND c.hash = w.parent"
            f") SELECT hash, parent, message FROM walk",
            [project_id, *(bytes.fromhex(h) for h in heads), project_id],
        )
        for node, parent, message in cursor.fetchall():
            parents[bytes(node).hex()] = (bytes(parent).hex(), bytes(message).hex())
    out: dict[str, list[str]] = {}
    for head in heads:
        hashes: list[str] = []
        node = head
        while node:
            if node not in parents:
                break
            node, message = parents[node]
            hashes.append(message)
        else:
            hashes.reverse()
            out[head] = hashes
    return out


def _messages_fetch(project_id: int, hashes: set[str]) -> dict[str, Any]:
    if not hashes:
        return {}
    return {
        bytes(digest).hex(): json.loads(zlib.decompress(bytes(content)).decode("utf-8", "surrogatepass"))
        for digest, content in Message.objects.filter(
            project_id=project_id, hash__in=[bytes.fromhex(h) for h in hashes]
        ).values_list("hash", "content")
    }


def _attributes_restore(attributes: Any, chains: dict[str, list[str]], messages: dict[str, Any]) -> Any:
    marker = attributes.get(MARKER) if isinstance(attributes, dict) else None
    if not isinstance(marker, dict):
        return attributes
    try:
        out = {key: value for key, value in attributes.items() if key != MARKER}
        if "x" in marker:
            out[MARKER] = marker["x"]
        for key, (head, fmt, *rest) in marker.get("j", {}).items():
            items = [messages[h] for h in _hashes(head, chains)]
            # The request object's other keys, in their order, "messages" in its place.
            out[key] = _dumps({**messages[rest[0]], "messages": items} if rest else items, fmt)
        for prefix, (indexes, head) in marker.get("f", {}).items():
            if isinstance(indexes, int):
                indexes = [str(i) for i in range(indexes)]
            for index, digest in zip(indexes, _hashes(head, chains), strict=True):
                for suffix, value in messages[digest].items():
                    out[f"{prefix}{index}.{suffix}"] = value
    except (KeyError, ValueError):
        # A message missing from the store (never deleted while referenced): show what is stored.
        return attributes
    return out


def _hashes(head: str, chains: dict[str, list[str]]) -> list[str]:
    return [head[1:]] if head.startswith(SINGLE) else chains[head]


def _events_restore(events: Any, messages: dict[str, Any]) -> Any:
    if not events:
        return events
    out = []
    for event in events:
        attributes = event.get("attributes") or {}
        ref = attributes.get(MARKER) if len(attributes) == 1 else None
        if isinstance(ref, str) and ref in messages:
            event = {**event, "attributes": messages[ref]}
        elif isinstance(ref, dict) and "x" in ref:
            event = {**event, "attributes": ref["x"]}
        out.append(event)
    return out


def contents_restore(*, project_id: int, contents: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """(attributes, events) pairs as stored -> as received, in two queries for all of them."""
    heads: set[str] = set()
    wanted: set[str] = set()
    for attributes, events in contents:
        _refs(attributes, events, heads, wanted)
    if not heads and not wanted:
        return contents
    chains = _chains_fetch(project_id, heads)
    for hashes in chains.values():
        wanted.update(hashes)
    messages = _messages_fetch(project_id, wanted)
    return [
        (_attributes_restore(attributes, chains, messages), _events_restore(events, messages))
        for attributes, events in contents
    ]


def spans_restore(*, project_id: int, spans: Iterable[Any]) -> None:
    """Put back, in place, the attributes and events of Span instances or `.values()` dicts (either
    field may be absent from a dict)."""
    spans = list(spans)
    if not spans:
        return
    is_dict = isinstance(spans[0], dict)
    if is_dict:
        contents = [(s.get("attributes"), s.get("events")) for s in spans]
    else:
        contents = [(s.attributes, s.events) for s in spans]
    restored = contents_restore(project_id=project_id, contents=contents)
    for span, (attributes, events) in zip(spans, restored, strict=True):
        if is_dict:
            if "attributes" in span:
                span["attributes"] = attributes
            if "events" in span:
                span["events"] = events
        else:
            span.attributes, span.events = attributes, events


def span_attributes(span: Any) -> dict[str, Any]:
    """One span's attributes as received."""
    return contents_restore(project_id=span.project_id, contents=[(span.attributes, [])])[0][0]
