"""OTLP/HTTP trace requests (OpenTelemetry protobuf, or its JSON form) into ``SpanRecord``s.

The wire format belongs to the HTTP edge; the trace service takes spans already flattened. MLflow's
tracing SDK writes every attribute value as a JSON string (``mlflow.spanType`` = ``"\\"LLM\\""``):
those are decoded for the ``attributes_json`` column, while the span itself is kept as received,
in the protobuf's JSON mapping, for ``GetTrace`` to hand back unchanged.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

from google.protobuf.json_format import MessageToDict, Parse, ParseError
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from lakeops.errors import InvalidArgumentError
from lakeops.services.traces import SpanRecord

OTLP_MEDIA_TYPES = ("application/x-protobuf", "application/json")
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def mlflow_trace_id(otel_trace_id: bytes) -> str:
    """MLflow's trace id for an OpenTelemetry trace id: ``tr-`` and 32 hex digits."""
    return "tr-" + otel_trace_id.hex().rjust(32, "0")


def decode_export_request(body: bytes, *, content_type: str | None, content_encoding: str | None) -> list[SpanRecord]:
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
    spans: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise InvalidArgumentError("Invalid OTLP span: trace_id must be 16 bytes and span_id 8 bytes")
                attributes = {a.key: _json_value(_any_value(a.value)) for a in span.attributes}
                span_type = attributes.get("mlflow.spanType")
                spans.append(
                    SpanRecord(
                        trace_id=mlflow_trace_id(span.trace_id),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() if span.parent_span_id else None,
                        name=span.name,
                        span_type=span_type if isinstance(span_type, str) else None,
                        status_code=_STATUS.get(span.status.code, "UNSET"),
                        status_message=span.status.message or None,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano or None,
                        attributes=attributes,
                        content=MessageToDict(span, preserving_proto_field_name=True),
                    )
                )
    return spans


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


def _json_value(value: Any) -> Any:
    """MLflow writes attribute values as JSON text; read them back (other strings stay as they are)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
