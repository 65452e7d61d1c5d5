"""OTLP span decoding: the stored JSON is protobuf's own JSON mapping of the span, whatever fields it uses."""

from __future__ import annotations

import json
import uuid

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from api.otlp import decode_export_request
from lakeops.errors import InvalidArgumentError

_SAMPLE = {
    FieldDescriptor.TYPE_STRING: 's\u00e9"\n',
    FieldDescriptor.TYPE_BYTES: b"\x00\xff",
    FieldDescriptor.TYPE_BOOL: True,
    FieldDescriptor.TYPE_DOUBLE: 1.5,
    FieldDescriptor.TYPE_ENUM: 1,
}


def _fill(message: Message, depth: int = 0) -> None:
    """Set every field of ``message`` (the first member of each oneof), nested messages too."""
    for field in message.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and message.WhichOneof(oneof.name) is not None:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 2:
                continue
            child = getattr(message, field.name).add() if field.is_repeated else getattr(message, field.name)
            _fill(child, depth + 1)
            child.SetInParent()
            continue
        value = _SAMPLE.get(field.type, 7)
        if field.is_repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)


def _every_value_kind() -> list[AnyValue]:
    values = []
    for field in AnyValue.DESCRIPTOR.oneofs_by_name["value"].fields:
        value = AnyValue()
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            _fill(getattr(value, field.name))
            getattr(value, field.name).SetInParent()
        else:
            setattr(value, field.name, _SAMPLE.get(field.type, 7))
        values.append(value)
    return values


def _decode(request: ExportTraceServiceRequest) -> list[dict[str, object]]:
    batch = decode_export_request(
        request.SerializeToString(), content_type="application/x-protobuf", content_encoding=None
    )
    return [row._asdict() for row in batch.rows]


def test_stored_json_is_protobufs_json_mapping_for_every_field() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    full = spans.add()
    _fill(full)  # every field of Span, Status, Event, Link, KeyValue, as this opentelemetry-proto defines them
    for value in _every_value_kind():
        full.attributes.add(key=f"k{len(full.attributes)}", key_strindex=3).value.CopyFrom(value)
    full.trace_id, full.span_id, full.parent_span_id = uuid.uuid4().bytes, b"\x01" * 8, b"\x02" * 8
    full.start_time_unix_nano, full.end_time_unix_nano = 2**63 + 1, 2**64 - 1  # beyond int64: still exact
    odd = spans.add(trace_id=uuid.uuid4().bytes, span_id=b"\x03" * 8, kind=42)  # an enum number no name has
    odd.status.code = 9
    for number in (float("nan"), float("-inf"), float("inf"), -0.0):
        odd.attributes.add(key=str(number)).value.double_value = number
    odd.attributes.add(key="unset")  # a key without a value
    odd.attributes.add().value.string_value = ""  # a value without a key
    bare = spans.add(trace_id=uuid.uuid4().bytes, span_id=b"\x04" * 8)
    bare.status.SetInParent()  # present but empty

    rows = _decode(request)
    # JSON has no NaN or infinities: the attributes column (read by SQL) holds null for them
    assert json.loads(str(rows[1]["attributes_json"])) == {
        "nan": None,
        "-inf": None,
        "inf": None,
        "-0.0": -0.0,
        "unset": None,
        "": "",
    }
    for span, row in zip(spans, rows, strict=True):
        expected = MessageToDict(span, preserving_proto_field_name=True)
        # same mapping, same key order (the text itself is orjson's, compact)
        assert _pairs(str(row["content_json"])) == _pairs(json.dumps(expected))


def _pairs(text: str) -> object:
    """JSON text read back with every object as its list of (key, value) pairs: key order counts."""
    return json.loads(text, object_pairs_hook=list)


def test_attribute_values_are_decoded_from_mlflows_json_text() -> None:
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=b"\x0a" * 16, span_id=b"\x0b" * 8, name="root")
    )
    for key, text in {
        "mlflow.spanType": '"LLM"',
        "mlflow.spanInputs": '{"q": [1, 2]}',
        "plain": "GET /x",
        "number_text": "12",
        "broken": '{"open',
        "empty": "",
        "big": '{"n": 123456789012345678901234567890}',  # beyond 64 bits: orjson cannot write it
        "lone_surrogate": '"\\ud800"',  # json reads it; orjson neither reads nor writes it
    }.items():
        span.attributes.add(key=key).value.string_value = text
    span.attributes.add(key="count").value.int_value = 3
    span.attributes.add(key="list").value.array_value.values.add(string_value="[1]")

    (row,) = _decode(request)
    assert json.loads(str(row["attributes_json"])) == {
        "mlflow.spanType": "LLM",
        "mlflow.spanInputs": {"q": [1, 2]},
        "plain": "GET /x",
        "number_text": 12,
        "broken": '{"open',
        "empty": "",
        "big": {"n": 123456789012345678901234567890},
        "lone_surrogate": "\ud800",
        "count": 3,
        "list": ["[1]"],
    }
    assert row["span_type"] == "LLM" and row["parent_span_id"] is None
    assert row["trace_id"] == "tr-" + "0a" * 16 and row["span_id"] == "0b" * 8


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [pytest.param(b"\x01" * 15, b"\x01" * 8, id="short-trace-id"), pytest.param(b"\x01" * 16, b"", id="no-span-id")],
)
def test_malformed_ids_are_refused(trace_id: bytes, span_id: bytes) -> None:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(trace_id=trace_id, span_id=span_id)
    with pytest.raises(InvalidArgumentError, match="trace_id must be 16 bytes"):
        _decode(request)
