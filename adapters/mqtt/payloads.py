"""Sans-IO JSON payloads for the control-centre link: setpoints out, acks in.

The shapes are fixed by `schema/setpoint.json` and `schema/ack.json` (JSON Schema 2020-12).
No JSON Schema library is a dependency, so `decode_ack` checks an ack by hand; the checks
mirror `ack.json` and `tests/adapters/mqtt/test_payloads.py` keeps the two in step.

A setpoint (UTF-8 JSON; values are kW = W/1000, relative to the resource's baseline,
+ is more consumption, − is more production):

    {"msgId": "…", "correlationId": "<FlexOrder MessageID>",
     "type": "DISPATCH_SETPOINT_RELATIVE", "units": "KW",
     "resource": "bat-17", "connection": "871685900000000017",
     "congestionPoint": "ea1.1992-01.com.example:gopacs:cp-1", "orderReference": "ord-9",
     "intervals": [{"start": "2026-11-26T10:00:00+00:00", "duration": "PT15M",
                    "values": [-1.5]}],
     "issued": "2026-11-26T09:41:07+00:00", "expires": "2026-11-26T10:15:00+00:00"}

An ack: {"msgId": "<setpoint msgId>", "correlationId": "…", "status": "ACCEPTED",
"reason": null, "ts": "2026-11-26T09:41:08+00:00"}.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Final

from gateway.errors import Reason, Rejection
from gateway.model import AckStatus, Setpoint, SetpointAck

# OpenADR 3.0.1 payloadDescriptor names, so a control centre maps them 1:1
SETPOINT_TYPE: Final = "DISPATCH_SETPOINT_RELATIVE"
SETPOINT_UNITS: Final = "KW"

# What ack.json says; test_payloads.py checks these against the file.
ACK_REQUIRED: Final = ("msgId", "correlationId", "status", "ts")
ACK_OPTIONAL: Final = ("reason",)
ACK_ID_MAX_LENGTH: Final = 200
ACK_REASON_MAX_LENGTH: Final = 1000
# Not in the schema: a bound on what we parse at all (an ack is a few hundred bytes).
MAX_ACK_BYTES: Final = 64 * 1024
# RFC 3339 §5.6 date-time (JSON Schema "format": "date-time"): seconds and an offset required
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


class MqttReason(Reason):
    """Why gridgate refused a payload from a control centre (acks are not answered: audited)."""

    INVALID_JSON = "Invalid JSON"
    SCHEMA_VIOLATION = "Schema violation"
    PAYLOAD_TOO_LARGE = "Payload too large"
    UNKNOWN_TOPIC = "Unknown topic"


class PayloadRejection(Rejection):
    """A rejected control-centre payload; `field` is the JSON Pointer of the bad member."""

    def __init__(self, reason: MqttReason, detail: str, *, field: str | None = None) -> None:
        super().__init__(reason, detail)
        self.field = field


def schema(name: str) -> dict[str, Any]:
    """Return the shipped JSON Schema `name` ("setpoint" or "ack")."""
    text = resources.files(__package__).joinpath("schema", f"{name}.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# ---------------------------------------------------------------------------------------------
# Setpoints (out)


def encode_setpoint(sp: Setpoint) -> bytes:
    """Return the UTF-8 JSON setpoint message for `sp` (see the module docstring)."""
    if not sp.intervals:
        raise ValueError(f"setpoint.json /intervals: setpoint {sp.message_id} has no intervals")
    doc = {
        "msgId": sp.message_id,
        "correlationId": sp.correlation_id,
        "type": SETPOINT_TYPE,
        "units": SETPOINT_UNITS,
        "resource": sp.resource,
        "connection": sp.connection_ean,
        "congestionPoint": sp.congestion_point,
        "orderReference": sp.order_reference,
        "intervals": [
            {
                "start": iso_utc(i.start),
                "duration": iso_duration(i.duration),
                "values": [i.power / 1000],
            }
            for i in sp.intervals
        ],
        "issued": iso_utc(sp.issued),
        "expires": iso_utc(sp.expires),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def iso_utc(moment: datetime) -> str:
    """Return `moment` as ISO 8601 in UTC with an explicit +00:00 offset."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"setpoint times must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(UTC).isoformat()


def iso_duration(span: timedelta) -> str:
    """Return `span` as an ISO 8601 duration such as PT15M or PT1H30M."""
    if span <= timedelta(0):
        raise ValueError(f"an interval duration must be positive, got {span}")
    seconds = span.total_seconds()
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT"
    if hours:
        text += f"{int(hours)}H"
    if minutes:
        text += f"{int(minutes)}M"
    if secs:
        text += f"{int(secs)}S" if secs == int(secs) else f"{secs:g}S"
    return text


# ---------------------------------------------------------------------------------------------
# Acks (in)


def decode_ack(data: bytes, *, aggregator: str, resource: str) -> SetpointAck:
    """Parse and check one ack from `aggregator`'s control centre about `resource`.

    `aggregator` and `resource` come from the topic it arrived on, never from the payload.
    Raise `PayloadRejection` (a `Rejection` with an `MqttReason`) naming the broken rule.
    """
    origin = f"(ack from aggregator {aggregator} for resource {resource})"
    if len(data) > MAX_ACK_BYTES:
        raise PayloadRejection(
            MqttReason.PAYLOAD_TOO_LARGE,
            f"an ack is at most {MAX_ACK_BYTES} bytes, got {len(data)} {origin}",
        )
    try:
        doc = json.loads(
            data.decode("utf-8"),
            parse_constant=_no_constant,
            object_pairs_hook=_no_duplicates,
        )
    except UnicodeDecodeError as e:
        raise PayloadRejection(
            MqttReason.INVALID_JSON, f"RFC 8259 §8.1: an ack must be UTF-8 ({e}) {origin}"
        ) from e
    except ValueError as e:  # json.JSONDecodeError and our hooks
        raise PayloadRejection(MqttReason.INVALID_JSON, f"RFC 8259: {e} {origin}") from e

    if not isinstance(doc, dict):
        raise _violation("", f"must be a JSON object, got {_json_type(doc)}", origin)
    for name in ACK_REQUIRED:
        if name not in doc:
            raise _violation(f"/{name}", "is required but missing", origin)

    msg_id = _bounded_string(doc, "msgId", ACK_ID_MAX_LENGTH, origin)
    correlation_id = _bounded_string(doc, "correlationId", ACK_ID_MAX_LENGTH, origin)

    status_text = doc["status"]
    try:
        status = AckStatus(status_text) if isinstance(status_text, str) else None
    except ValueError:
        status = None
    if status is None:
        allowed = ", ".join(s.value for s in AckStatus)
        raise _violation("/status", f"must be one of {allowed}; got {status_text!r}", origin)

    reason = doc.get("reason")
    if reason is not None:
        if not isinstance(reason, str):
            raise _violation(
                "/reason", f"must be a string or null, got {_json_type(reason)}", origin
            )
        if len(reason) > ACK_REASON_MAX_LENGTH:
            raise _violation(
                "/reason", f"must be at most {ACK_REASON_MAX_LENGTH} characters", origin
            )

    ts_text = doc["ts"]
    if not isinstance(ts_text, str):
        raise _violation("/ts", f"must be a date-time string, got {_json_type(ts_text)}", origin)
    rfc3339 = "must be an RFC 3339 date-time with seconds and an offset (Z or ±hh:mm)"
    if not _RFC3339.fullmatch(ts_text):
        raise _violation("/ts", f"{rfc3339}; got {ts_text!r}", origin)
    try:
        ts = datetime.fromisoformat(ts_text)
    except ValueError as e:  # well-formed but impossible, e.g. month 13
        raise _violation("/ts", f"{rfc3339}; got {ts_text!r}: {e}", origin) from e

    return SetpointAck(
        message_id=msg_id,
        correlation_id=correlation_id,
        status=status,
        aggregator=aggregator,
        resource=resource,
        reason=reason,
        timestamp=ts.astimezone(UTC),
    )


def encode_ack(
    *,
    msg_id: str,
    correlation_id: str,
    status: AckStatus,
    reason: str | None = None,
    ts: datetime | None = None,
) -> bytes:
    """Return a UTF-8 JSON ack (what a control centre sends; used by the simulated one)."""
    doc: dict[str, Any] = {
        "msgId": msg_id,
        "correlationId": correlation_id,
        "status": status.value,
        "ts": iso_utc(ts or datetime.now(UTC)),
    }
    if reason is not None:
        doc["reason"] = reason
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _bounded_string(doc: dict[str, Any], name: str, max_length: int, origin: str) -> str:
    value = doc[name]
    if not isinstance(value, str):
        raise _violation(f"/{name}", f"must be a string, got {_json_type(value)}", origin)
    if not value:
        raise _violation(f"/{name}", "must not be empty", origin)
    if len(value) > max_length:
        raise _violation(f"/{name}", f"must be at most {max_length} characters", origin)
    return value


def _violation(pointer: str, rule: str, origin: str) -> PayloadRejection:
    where = pointer or "(the document)"
    return PayloadRejection(
        MqttReason.SCHEMA_VIOLATION, f"ack.json {where} {rule} {origin}", field=pointer
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            # RFC 8259 §4: names SHOULD be unique; a duplicate status is ambiguous, so refuse
            raise ValueError(f"duplicate member name {key!r}")
        doc[key] = value
    return doc
