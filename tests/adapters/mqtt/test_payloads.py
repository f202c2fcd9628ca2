from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from adapters.mqtt.payloads import (
    ACK_ID_MAX_LENGTH,
    ACK_OPTIONAL,
    ACK_REASON_MAX_LENGTH,
    ACK_REQUIRED,
    MAX_ACK_BYTES,
    SETPOINT_TYPE,
    SETPOINT_UNITS,
    MqttReason,
    PayloadRejection,
    decode_ack,
    encode_ack,
    encode_setpoint,
    iso_duration,
    schema,
)
from gateway.errors import Rejection
from gateway.model import AckStatus, SetpointInterval
from tests.adapters.mqtt.conftest import make_setpoint

# ---------------------------------------------------------------------------------------------
# A minimal JSON Schema 2020-12 checker for the keywords our two schemas use; written apart
# from payloads.py so that the schema files, not the code, are the reference.

_DATE_TIME = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)
_DURATION = re.compile(r"P(?!$)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?")
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}
_HANDLED = {
    "$schema", "$id", "title", "description", "type", "required", "properties",
    "additionalProperties", "enum", "const", "minLength", "maxLength", "minItems",
    "maxItems", "items", "format",
}  # fmt: skip


def schema_errors(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    unknown = set(node) - _HANDLED
    assert not unknown, f"the test's checker does not handle {unknown}"
    errors: list[str] = []
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{path}: type"]
    if "const" in node and value != node["const"]:
        errors.append(f"{path}: const")
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{path}: enum")
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", 1 << 30):
            errors.append(f"{path}: length")
        fmt = node.get("format")
        if fmt == "date-time" and not _DATE_TIME.fullmatch(value):
            errors.append(f"{path}: date-time")
        if fmt == "duration" and not _DURATION.fullmatch(value):
            errors.append(f"{path}: duration")
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0) or len(value) > node.get("maxItems", 1 << 30):
            errors.append(f"{path}: items count")
        for i, item in enumerate(value):
            errors += schema_errors(node.get("items", {}), item, f"{path}/{i}")
    if isinstance(value, dict):
        errors += [f"{path}/{k}: required" for k in node.get("required", ()) if k not in value]
        props = node.get("properties", {})
        for key, item in value.items():
            if key in props:
                errors += schema_errors(props[key], item, f"{path}/{key}")
            elif node.get("additionalProperties", True) is False:
                errors.append(f"{path}/{key}: additional")
    return errors


# ---------------------------------------------------------------------------------------------
# Setpoints


def test_encode_setpoint_shape_and_units() -> None:
    sp = make_setpoint(power=-1500, count=2)
    doc = json.loads(encode_setpoint(sp).decode("utf-8"))
    assert doc == {
        "msgId": sp.message_id,
        "correlationId": sp.correlation_id,
        "type": "DISPATCH_SETPOINT_RELATIVE",
        "units": "KW",
        "resource": "bat-17",
        "connection": "871685900000000017",
        "congestionPoint": "ea1.1992-01.com.example:gopacs:cp-1",
        "orderReference": "ord-9",
        "intervals": [
            {"start": "2026-11-26T10:00:00+00:00", "duration": "PT15M", "values": [-1.5]},
            {"start": "2026-11-26T10:15:00+00:00", "duration": "PT15M", "values": [-1.5]},
        ],
        "issued": "2026-11-26T09:41:07+00:00",
        "expires": "2026-11-26T10:30:00+00:00",
    }


def test_encoded_setpoint_is_valid_against_setpoint_schema() -> None:
    doc = json.loads(encode_setpoint(make_setpoint(power=2250, count=3)))
    assert schema_errors(schema("setpoint"), doc) == []
    # and the checker does catch a broken one, so the line above can fail
    doc["intervals"][0]["values"] = ["2.25"]
    del doc["expires"]
    assert sorted(schema_errors(schema("setpoint"), doc)) == [
        "/expires: required",
        "/intervals/0/values/0: type",
    ]


def test_encode_setpoint_converts_times_to_utc_and_watts_to_kilowatts() -> None:
    cet = timezone(timedelta(hours=1))
    interval = SetpointInterval(datetime(2026, 11, 26, 11, 0, tzinfo=cet), timedelta(hours=1), 1234)
    sp = dataclasses.replace(make_setpoint(), intervals=(interval,))
    interval = json.loads(encode_setpoint(sp))["intervals"][0]
    assert interval == {"start": "2026-11-26T10:00:00+00:00", "duration": "PT1H", "values": [1.234]}


def test_encode_setpoint_refuses_naive_times() -> None:
    sp = make_setpoint()
    naive = SetpointInterval(datetime(2026, 11, 26, 10, 0), timedelta(minutes=15), 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_setpoint(dataclasses.replace(sp, intervals=(naive,)))
    with pytest.raises(ValueError, match="no intervals"):
        encode_setpoint(dataclasses.replace(sp, intervals=()))


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(minutes=15), "PT15M"),
        (timedelta(minutes=5), "PT5M"),
        (timedelta(hours=1, minutes=30), "PT1H30M"),
        (timedelta(hours=24), "PT24H"),
        (timedelta(seconds=90), "PT1M30S"),
    ],
)
def test_iso_duration(span: timedelta, text: str) -> None:
    assert iso_duration(span) == text


# ---------------------------------------------------------------------------------------------
# Acks

GOOD_ACK: dict[str, Any] = {
    "msgId": "sp-1",
    "correlationId": "order-1",
    "status": "REJECTED",
    "reason": "battery full",
    "ts": "2026-11-26T09:41:08.250+01:00",
}


def test_decode_ack_takes_aggregator_and_resource_from_the_caller() -> None:
    ack = decode_ack(json.dumps(GOOD_ACK).encode(), aggregator="agr1", resource="bat-17")
    assert ack.message_id == "sp-1"
    assert ack.correlation_id == "order-1"
    assert ack.status is AckStatus.REJECTED
    assert ack.reason == "battery full"
    assert (ack.aggregator, ack.resource) == ("agr1", "bat-17")
    assert ack.timestamp == datetime(2026, 11, 26, 8, 41, 8, 250000, tzinfo=UTC)
    assert ack.timestamp.tzinfo is UTC


def test_decode_ack_accepts_z_null_reason_and_unknown_members() -> None:
    doc = {**GOOD_ACK, "status": "APPLIED", "ts": "2026-11-26T09:41:08Z", "reason": None, "x": 1}
    ack = decode_ack(json.dumps(doc).encode(), aggregator="a", resource="r")
    assert ack.status is AckStatus.APPLIED
    assert ack.reason is None
    assert ack.timestamp == datetime(2026, 11, 26, 9, 41, 8, tzinfo=UTC)


def test_encode_ack_round_trips() -> None:
    data = encode_ack(msg_id="m", correlation_id="c", status=AckStatus.FAILED, reason="trip")
    ack = decode_ack(data, aggregator="a", resource="r")
    assert (ack.message_id, ack.correlation_id, ack.status, ack.reason) == (
        "m",
        "c",
        AckStatus.FAILED,
        "trip",
    )
    assert schema_errors(schema("ack"), json.loads(data)) == []


def _without(name: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD_ACK.items() if k != name}


# (document, the JSON Pointer decode_ack must name)
BAD_ACK_DOCS: list[tuple[Any, str]] = [
    ([GOOD_ACK], ""),
    ("ACCEPTED", ""),
    (_without("msgId"), "/msgId"),
    (_without("correlationId"), "/correlationId"),
    (_without("status"), "/status"),
    (_without("ts"), "/ts"),
    ({**GOOD_ACK, "msgId": 17}, "/msgId"),
    ({**GOOD_ACK, "msgId": ""}, "/msgId"),
    ({**GOOD_ACK, "msgId": "m" * (ACK_ID_MAX_LENGTH + 1)}, "/msgId"),
    ({**GOOD_ACK, "correlationId": None}, "/correlationId"),
    ({**GOOD_ACK, "status": "OK"}, "/status"),
    ({**GOOD_ACK, "status": "accepted"}, "/status"),
    ({**GOOD_ACK, "status": 1}, "/status"),
    ({**GOOD_ACK, "reason": 42}, "/reason"),
    ({**GOOD_ACK, "reason": "r" * (ACK_REASON_MAX_LENGTH + 1)}, "/reason"),
    ({**GOOD_ACK, "ts": "2026-11-26T09:41:08"}, "/ts"),  # no offset
    ({**GOOD_ACK, "ts": "2026-11-26"}, "/ts"),
    ({**GOOD_ACK, "ts": "yesterday"}, "/ts"),
    ({**GOOD_ACK, "ts": 1764150068}, "/ts"),
    ({**GOOD_ACK, "ts": "2026-13-26T09:41:08Z"}, "/ts"),
]


@pytest.mark.parametrize(("doc", "field"), BAD_ACK_DOCS)
def test_bad_ack_is_a_schema_violation_naming_the_field(doc: Any, field: str) -> None:
    with pytest.raises(Rejection) as caught:
        decode_ack(json.dumps(doc).encode(), aggregator="agr1", resource="bat-17")
    rejection = caught.value
    assert isinstance(rejection, PayloadRejection)
    assert rejection.reason is MqttReason.SCHEMA_VIOLATION
    assert rejection.field == field
    # the message leads with the rule and names the member and where the ack came from
    assert rejection.text.startswith(f"Schema violation: ack.json {field or '(the document)'} ")
    assert "aggregator agr1" in rejection.detail
    assert "bat-17" in rejection.detail


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{not json",
        b'{"msgId": "a",}',
        b'{"msgId": NaN}',
        b'{"msgId":"a","msgId":"b","correlationId":"c","status":"ACCEPTED","ts":"2026-11-26T09:41:08Z"}',
        '{"msgId": "é"}'.encode("latin-1"),
    ],
)
def test_unparseable_ack_is_invalid_json(data: bytes) -> None:
    with pytest.raises(Rejection) as caught:
        decode_ack(data, aggregator="agr1", resource="bat-17")
    assert caught.value.reason is MqttReason.INVALID_JSON
    assert "agr1" in caught.value.detail


def test_oversized_ack_is_refused_before_parsing() -> None:
    data = json.dumps({**GOOD_ACK, "pad": "x" * MAX_ACK_BYTES}).encode()
    with pytest.raises(Rejection) as caught:
        decode_ack(data, aggregator="agr1", resource="bat-17")
    assert caught.value.reason is MqttReason.PAYLOAD_TOO_LARGE


# ---------------------------------------------------------------------------------------------
# The schema files and the code agree


def test_ack_schema_and_decode_ack_agree_on_members_and_limits() -> None:
    ack = schema("ack")
    assert ack["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert tuple(ack["required"]) == ACK_REQUIRED
    assert set(ack["properties"]) == set(ACK_REQUIRED) | set(ACK_OPTIONAL)
    assert ack["properties"]["status"]["enum"] == [s.value for s in AckStatus]
    assert ack["properties"]["msgId"]["maxLength"] == ACK_ID_MAX_LENGTH
    assert ack["properties"]["correlationId"]["maxLength"] == ACK_ID_MAX_LENGTH
    assert ack["properties"]["reason"]["maxLength"] == ACK_REASON_MAX_LENGTH


def test_setpoint_schema_and_encode_setpoint_agree_on_members() -> None:
    sp_schema = schema("setpoint")
    assert sp_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    doc = json.loads(encode_setpoint(make_setpoint()))
    assert set(sp_schema["required"]) == set(sp_schema["properties"]) == set(doc)
    interval_schema = sp_schema["properties"]["intervals"]["items"]
    assert set(interval_schema["required"]) == set(doc["intervals"][0])
    assert sp_schema["properties"]["type"]["const"] == SETPOINT_TYPE
    assert sp_schema["properties"]["units"]["const"] == SETPOINT_UNITS


@pytest.mark.parametrize(
    "doc",
    [GOOD_ACK, {**GOOD_ACK, "reason": None, "extra": [1]}, _without("reason")]
    + [doc for doc, _ in BAD_ACK_DOCS],
)
def test_decode_ack_accepts_exactly_what_ack_schema_accepts(doc: Any) -> None:
    by_schema = schema_errors(schema("ack"), doc) == []
    try:
        decode_ack(json.dumps(doc).encode(), aggregator="a", resource="r")
        by_code = True
    except Rejection:
        by_code = False
    assert by_code == by_schema
