"""OTLP/HTTP trace requests (OpenTelemetry protobuf, or its JSON form) into a ``SpanBatch``.

The wire format belongs to the HTTP edge; the trace service takes spans already flattened into the
``spans`` table's columns. MLflow's tracing SDK writes every attribute value as a JSON string
(``mlflow.spanType`` = ``"\\"LLM\\""``): those are decoded for the ``attributes_json`` column, while
the span itself is kept as received, in the protobuf's JSON mapping, for ``GetTrace`` to hand back
unchanged.

This is the span ingest hot path, so each span is read once, field by field, building its row and
its JSON together. protobuf's ``MessageToDict`` walks the descriptors of every field of every span
and took about half the server's time per span; ``_span_json`` reads the fields of ``Span``,
``Status``, ``KeyValue`` and ``AnyValue`` by name and gives the same mapping, key order included
(tests/api/test_otlp.py checks it against ``MessageToDict`` on spans using every field, and that
it names every field of those messages, so a new field in a later ``opentelemetry-proto`` fails a
test instead of being dropped). Events, links and array or key-value-list values, rare in spans,
go through ``MessageToDict``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import json
import math
import zlib
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict, Parse, ParseError
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from lakeops.errors import InvalidArgumentError
from lakeops.services.traces import INPUTS_ATTRIBUTE, OUTPUTS_ATTRIBUTE, SPAN_TYPE_ATTRIBUTE, SpanBatch, SpanRow

OTLP_MEDIA_TYPES = ("application/x-protobuf", "application/json")
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
# Enum values as the JSON mapping names them; an unknown number stays a number, as MessageToDict does.
_SPAN_KINDS = {v.number: v.name for v in Span.DESCRIPTOR.enum_types_by_name["SpanKind"].values}
_STATUS_CODES = {v.number: v.name for v in Status.DESCRIPTOR.enum_types_by_name["StatusCode"].values}
# The first character of any JSON text; a string starting otherwise is kept as it is without trying.
_JSON_START = frozenset('{["-0123456789tfn \t\n\r')
_b2a = binascii.b2a_base64


def _b64(data: bytes) -> str:
    return _b2a(data, newline=False).decode()


def _dumps(value: Any) -> str:
    """JSON text of ``value``: orjson's (compact, UTF-8; NaN and infinities as null, JSON having no such
    numbers), else the standard library's for what orjson refuses (integers beyond 64 bits, unpaired
    surrogates)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str)


def mlflow_trace_id(otel_trace_id: bytes) -> str:
    """MLflow's trace id for an OpenTelemetry trace id: ``tr-`` and 32 hex digits."""
    return "tr-" + otel_trace_id.hex().rjust(32, "0")


def decode_export_request(body: bytes, *, content_type: str | None, content_encoding: str | None) -> SpanBatch:
    """The spans of an ``ExportTraceServiceRequest``.

    Raises:
        InvalidArgumentError: an unknown media type or encoding, or a body that does not parse.
    """
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in OTLP_MEDIA_TYPES:
        raise InvalidArgumentError(
            f"Invalid Content-Type {content_type!r}: expected one of {', '.join(OTLP_MEDIA_TYPES)}"
        )
    body = _decompress(body, (content_encoding or "").strip().lower())
    request = ExportTraceServiceRequest()
    try:
        if media == "application/json":
            Parse(_hex_ids_to_base64(body), request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except (DecodeError, ParseError, ValueError) as exc:
        raise InvalidArgumentError(f"Invalid OTLP trace request: {exc}") from exc
    batch = SpanBatch()
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                _add_span(batch, span)
    return batch


def _add_span(batch: SpanBatch, span: Span) -> None:
    """Append ``span``'s row (and, for a root span, what its trace's info needs) to ``batch``."""
    trace_id, span_id = span.trace_id, span.span_id
    if len(trace_id) != 16 or len(span_id) != 8:
        raise InvalidArgumentError("Invalid OTLP span: trace_id must be 16 bytes and span_id 8 bytes")
    attributes: dict[str, Any] = {}
    content = _span_json(span, attributes)
    span_type = attributes.get(SPAN_TYPE_ATTRIBUTE)
    status = span.status
    parent = span.parent_span_id
    row = SpanRow(
        trace_id="tr-" + trace_id.hex(),
        span_id=span_id.hex(),
        parent_span_id=parent.hex() if parent else None,
        name=span.name,
        span_type=span_type if isinstance(span_type, str) else None,
        status_code=_STATUS.get(status.code, "UNSET"),
        status_message=status.message or None,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano or None,
        attributes_json=_dumps(attributes),
        content_json=_dumps(content),
    )
    batch.rows.append(row)
    if not parent:
        batch.add_root(row, inputs=attributes.get(INPUTS_ATTRIBUTE), outputs=attributes.get(OUTPUTS_ATTRIBUTE))


def _span_json(span: Span, attributes: dict[str, Any]) -> dict[str, Any]:
    """``MessageToDict(span, preserving_proto_field_name=True)``, fields in number order; fills
    ``attributes`` with the span's attributes, values decoded."""
    out: dict[str, Any] = {}
    if span.trace_id:
        out["trace_id"] = _b64(span.trace_id)
    if span.span_id:
        out["span_id"] = _b64(span.span_id)
    if span.trace_state:
        out["trace_state"] = span.trace_state
    if span.parent_span_id:
        out["parent_span_id"] = _b64(span.parent_span_id)
    if span.name:
        out["name"] = span.name
    if span.kind:
        out["kind"] = _SPAN_KINDS.get(span.kind, span.kind)
    if span.start_time_unix_nano:
        out["start_time_unix_nano"] = str(span.start_time_unix_nano)
    if span.end_time_unix_nano:
        out["end_time_unix_nano"] = str(span.end_time_unix_nano)
    if span.attributes:
        out["attributes"] = [_key_value_json(kv, attributes) for kv in span.attributes]
    if span.dropped_attributes_count:
        out["dropped_attributes_count"] = span.dropped_attributes_count
    if span.events:
        out["events"] = [MessageToDict(e, preserving_proto_field_name=True) for e in span.events]
    if span.dropped_events_count:
        out["dropped_events_count"] = span.dropped_events_count
    if span.links:
        out["links"] = [MessageToDict(link, preserving_proto_field_name=True) for link in span.links]
    if span.dropped_links_count:
        out["dropped_links_count"] = span.dropped_links_count
    if span.HasField("status"):
        status, status_json = span.status, {}
        if status.message:
            status_json["message"] = status.message
        if status.code:
            status_json["code"] = _STATUS_CODES.get(status.code, status.code)
        out["status"] = status_json
    if span.flags:
        out["flags"] = span.flags
    return out


def _key_value_json(kv: KeyValue, attributes: dict[str, Any]) -> dict[str, Any]:
    """One attribute in the JSON mapping; its decoded value goes into ``attributes``."""
    out: dict[str, Any] = {}
    key = kv.key
    if key:
        out["key"] = key
    decoded = None
    if kv.HasField("value"):
        out["value"], decoded = _any_value_json(kv.value)
    if kv.key_strindex:
        out["key_strindex"] = kv.key_strindex
    attributes[key] = decoded
    return out


def _any_value_json(value: AnyValue) -> tuple[dict[str, Any], Any]:
    """An ``AnyValue`` in the JSON mapping, and decoded (MLflow's JSON text read back)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text = value.string_value
        return {kind: text}, _json_text(text)
    if kind is None:
        return {}, None
    if kind == "int_value":
        return {kind: str(value.int_value)}, value.int_value
    if kind == "bool_value":
        return {kind: value.bool_value}, value.bool_value
    if kind == "double_value":
        number = value.double_value
        if math.isinf(number):
            return {kind: "-Infinity" if number < 0 else "Infinity"}, number
        return {kind: "NaN" if math.isnan(number) else number}, number
    if kind == "bytes_value":
        text = _b64(value.bytes_value)
        return {kind: text}, _json_text(text)
    return MessageToDict(value, preserving_proto_field_name=True), _any_value(value)


def _decompress(body: bytes, encoding: str) -> bytes:
    try:
        if encoding in ("", "identity"):
            return body
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error) as exc:
        raise InvalidArgumentError(f"Invalid {encoding} body: {exc}") from exc
    raise InvalidArgumentError(f"Unsupported Content-Encoding {encoding!r}: use gzip, deflate or none")


def _hex_ids_to_base64(body: bytes) -> str:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping wants base64 for bytes fields."""
    try:
        data = json.loads(body)
        for resource_spans in data.get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    for key in _HEX_ID_FIELDS:
                        if span.get(key):
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidArgumentError(f"Invalid OTLP JSON trace request: {exc}") from exc
    return json.dumps(data)


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


def _json_text(text: str) -> Any:
    """MLflow writes attribute values as JSON text; read them back (other strings stay as they are)."""
    if not text or text[0] not in _JSON_START:
        return text  # cannot be JSON: spares the parser's exception
    try:
        if text[0] == '"':  # a JSON string, MLflow's commonest value: orjson reads it as json does
            with contextlib.suppress(orjson.JSONDecodeError):  # (a lone surrogate escape: json's turn)
                return orjson.loads(text)
        return json.loads(text)  # orjson would read an integer beyond 64 bits as a float
    except ValueError:
        return text
