"""An LDC's IEC 61968-9 meter readings become metering data, stored and audited for
settlement; the LDC gets the IEC 61968-100 reply (real gridgate over mutual TLS, both
databases)."""

# ruff: noqa: F811 - `world` is the imported fixture

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import select

from adapters.cim.documents import (
    IntervalBlock,
    IntervalReading,
    MeterReading,
    MeterReadingsDocument,
)
from adapters.cim.emit import emit
from adapters.cim.metering import ReadingType
from adapters.cim.parse import parse
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, MessageRecord
from tests.gateway.test_cim_activation import World, world  # noqa: F401 - `world` is the fixture

CONNECTION = "871685900000000101"  # bat-1's connection, behind the LDC's congestion point
IMPORT = "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0"  # 15-min delta energy, forward, kWh
EXPORT = "0.0.2.4.19.1.12.0.0.0.0.0.0.0.0.0.72.0"  # the same reverse, in Wh
POWER = "0.0.2.12.1.1.37.0.0.0.0.0.0.0.0.3.38.0"  # 15-min power, forward, kW
ZONE = ZoneInfo("Europe/Amsterdam")


def day_start() -> datetime:
    """Yesterday's local midnight, in UTC."""
    yesterday = datetime.now(ZONE).date() - timedelta(days=1)
    return datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=ZONE).astimezone(UTC)


def readings(
    *blocks: IntervalBlock, usage_point: str = CONNECTION, message_id: str = "mr-1"
) -> MeterReadingsDocument:
    return MeterReadingsDocument(
        verb="created",
        message_id=message_id,
        timestamp=datetime.now(UTC),
        source="MDMS",
        meter_readings=(
            MeterReading(meter="MTR-1", usage_point=usage_point, interval_blocks=blocks),
        ),
    )


def block(reading_type: str, *values: str, first: int = 1) -> IntervalBlock:
    """Readings of consecutive ISPs from ISP `first` of yesterday (time stamps end them)."""
    start = day_start()
    return IntervalBlock(
        reading_type,
        tuple(
            IntervalReading(start + timedelta(minutes=15 * (first + i)), Decimal(v))
            for i, v in enumerate(values)
        ),
    )


async def post(
    world: World, document: MeterReadingsDocument | bytes, tls: ssl.SSLContext | None = None
) -> MeterReadingsDocument:
    body = document if isinstance(document, bytes) else emit(document)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{world.url}/cim/v1/documents",
            data=body,
            headers={"Content-Type": "application/xml"},
            ssl=tls or world.ldc_tls,
        ) as response,
    ):
        assert response.status == 200
        reply = parse(await response.read())
    assert isinstance(reply, MeterReadingsDocument) and reply.verb == "reply"
    return reply


async def stored_metering(world: World) -> list[dict[str, object]]:
    async with sessionmaker(world.gateway.engine)() as session:
        details = await session.scalars(
            select(AuditEntry.detail).where(AuditEntry.event == "document.accepted")
        )
        return [m for d in details for m in json.loads(d).get("metering", [])]


async def test_interval_readings_become_metering_of_the_connection(world: World) -> None:
    document = readings(
        block(IMPORT, "1.25", "2.5", "0"),
        block(EXPORT, "500", first=2),
        block(POWER, "5", "10", "0"),
    )
    reply = await post(world, document)
    assert reply.reply_result == "OK" and reply.reply_errors == ()
    assert reply.correlation_id == "mr-1"
    (metering,) = await stored_metering(world)
    yesterday = (datetime.now(ZONE).date() - timedelta(days=1)).isoformat()
    assert metering["ean"] == f"ean.{CONNECTION}" and metering["period"] == yesterday
    assert metering["revision"] == 1 and metering["isp_duration"] == "PT15M"
    assert metering["profiles"] == [
        {"type": "ExportEnergy", "unit": "kWh", "isps": {"2": "0.500"}},
        {"type": "ImportEnergy", "unit": "kWh", "isps": {"1": "1.25", "2": "2.5", "3": "0"}},
        {"type": "Power", "unit": "kW", "isps": {"1": "5", "2": "10", "3": "0"}},
    ]
    # the facts later revisions and settlement look up
    async with sessionmaker(world.gateway.engine)() as session:
        row = await session.scalar(select(MessageRecord).where(MessageRecord.kind == "Metering"))
    assert row is not None and row.subject == f"ean.{CONNECTION}" and row.revision == 1

    # new readings of the same connection and day are the next revision
    reply = await post(world, readings(block(IMPORT, "1.5"), message_id="mr-2"))
    assert reply.reply_result == "OK"
    assert sorted(m["revision"] for m in await stored_metering(world)) == [1, 2]


async def test_a_resubmission_gets_the_same_reply_and_other_content_is_refused(
    world: World,
) -> None:
    body = emit(readings(block(IMPORT, "1")))
    first = await post(world, body)
    again = await post(world, body)
    assert again == first  # the same reply, byte for byte decoded
    changed = await post(world, emit(readings(block(IMPORT, "2"))))
    assert changed.reply_result == "FAILED"
    (error,) = changed.reply_errors
    assert error.details is not None and "mr-1 was already received" in error.details
    assert len(await stored_metering(world)) == 1


@pytest.mark.parametrize(
    ("reading", "code", "named"),
    [
        (readings(block(IMPORT, "1"), usage_point="871685900000009999"), "2.10", "no connection"),
        (
            readings(block(IMPORT.replace("0.0.2.", "0.0.7.", 1), "1")),
            "2.4",
            "measuringPeriod (field 3) 7 is not the market's ISP of 15 minutes",
        ),
        (
            readings(block(IMPORT.replace(".12.0.", ".99.0.", 1), "1")),
            "2.4",
            "measurementKind (field 7) 99",
        ),
    ],
)
async def test_bad_readings_fail_with_an_error_naming_the_field(
    world: World, reading: MeterReadingsDocument, code: str, named: str
) -> None:
    reply = await post(world, reading)
    assert reply.reply_result == "FAILED"
    (error,) = reply.reply_errors
    assert error.code == code and error.details is not None and named in error.details
    assert await stored_metering(world) == []


async def test_one_good_and_one_bad_reading_is_partial(world: World) -> None:
    good = readings(block(IMPORT, "1"))
    both = replace(
        good,
        meter_readings=(
            *good.meter_readings,
            MeterReading(
                meter="MTR-404",
                usage_point="871685900000009999",
                interval_blocks=good.meter_readings[0].interval_blocks,
            ),
        ),
    )
    reply = await post(world, both)
    assert reply.reply_result == "PARTIAL"
    assert [e.code for e in reply.reply_errors] == ["2.10"]
    assert len(await stored_metering(world)) == 1


async def test_only_an_ldc_sends_meter_readings(world: World) -> None:
    reply = await post(world, readings(block(IMPORT, "1")), tls=world.iso_tls)
    assert reply.reply_result == "FAILED"
    assert "only an LDC sends meter readings" in (reply.reply_errors[0].details or "")
    assert await stored_metering(world) == []


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ((b"<m:value>1</m:value>", b""), "value"),
        ((IMPORT.encode(), b"0.0.2.4"), "ReadingType: attribute ref"),
    ],
)
async def test_an_unreadable_request_gets_a_failed_reply(
    world: World, change: tuple[bytes, bytes], named: str
) -> None:
    body = emit(readings(block(IMPORT, "1"))).replace(*change)
    reply = await post(world, body)
    assert reply.reply_result == "FAILED"
    (error,) = reply.reply_errors
    assert error.code == "2.4" and named in (error.details or "")
    assert await stored_metering(world) == []


def test_reading_types_decode_to_uftp_profiles() -> None:
    assert ReadingType.decode(IMPORT).profile() == ("ImportEnergy", Decimal(1))
    assert ReadingType.decode(EXPORT).profile() == ("ExportEnergy", Decimal("0.001"))
    assert ReadingType.decode(POWER).profile() == ("Power", Decimal(1))
    register = "0.0.0.3.1.1.12.0.0.0.0.0.0.0.0.3.72.0"
    assert ReadingType.decode(register).profile() == ("ImportMeterReading", Decimal(1))
    with pytest.raises(ValueError, match="flowDirection"):
        ReadingType.decode(IMPORT.replace(".4.1.1.", ".4.2.1.", 1)).profile()


async def test_readings_of_one_connection_and_day_sent_at_once_get_distinct_revisions(
    world: World,
) -> None:
    replies = await asyncio.gather(
        *(post(world, readings(block(IMPORT, str(i)), message_id=f"mr-{i}")) for i in range(4))
    )
    assert [r.reply_result for r in replies] == ["OK"] * 4
    assert sorted(m["revision"] for m in await stored_metering(world)) == [1, 2, 3, 4]
