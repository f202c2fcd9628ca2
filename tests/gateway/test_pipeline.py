"""The pipeline end to end: simulated peers over real HTTP, the real Mosquitto, both databases.

Each test stands up a gateway with one DSO and two aggregators: `agr-web` has a UFTP
endpoint and an MQTT control centre, `agr-mqtt` only a control centre.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from adapters.uftp import codec, signing
from gateway.audit.chain import verify_chain
from gateway.model import (
    FlexOffer,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    FlexRequestResponse,
    FlexResponse,
    Message,
    OfferOption,
    PowerIsp,
    RequestIsp,
    Result,
    Role,
)
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, OutboxEntry
from tests.adapters.mqtt.conftest import MOSQUITTO_HOST, MOSQUITTO_PORT
from tests.gateway.world import CP, LIMIT, OTHER_CP, ZONE, World, is_kind, tomorrow


async def test_an_order_within_the_limit_reaches_the_aggregator_and_its_control_centre(
    world: World,
) -> None:
    order = world.order({69: -120_000, 70: -120_000})
    status, text = await world.dso.send(order)
    assert (status, text) == (200, "")
    forwarded = await world.agr.wait_for(is_kind(FlexOrder))
    assert forwarded.envelope.message_id == order.envelope.message_id
    setpoints = await world.centres["agr-web"].wait_for(2)
    by_resource = {s["resource"]: s for s in setpoints}
    # bat-1 spans 200 kW, ev-2 100 kW: -120 kW splits -80/-40 kW
    assert by_resource["bat-1"]["intervals"][0]["values"] == [-80.0]
    assert by_resource["ev-2"]["intervals"][0]["values"] == [-40.0]
    assert all(s["correlationId"] == order.envelope.message_id for s in setpoints)
    # the aggregator answers; the answer reaches the DSO through gridgate, signed by the AGR
    await world.agr.send(
        FlexOrderResponse(
            envelope=world.envelope("agr-web.example.com", "dso.example.com", Role.AGR),
            reference_message_id=order.envelope.message_id,
            result=Result.ACCEPTED,
        )
    )
    answer = await world.dso.wait_for(is_kind(FlexOrderResponse))
    assert answer.envelope.sender_domain == "agr-web.example.com"
    await world.settle()
    for _ in range(50):
        if len(await world.audit("setpoint.ack")) == 2:
            break
        await asyncio.sleep(0.05)
    acks = await world.audit("setpoint.ack")
    assert len(acks) == 2 and all('"ACCEPTED"' in a.detail for a in acks)
    async with sessionmaker(world.gateway.engine)() as session:
        assert (await verify_chain(session)).ok


async def test_an_mqtt_only_aggregator_gets_setpoints_and_gridgate_confirms_the_order(
    world: World,
) -> None:
    order = world.order({10: 50_000}, to="agr-mqtt.example.com")
    assert (await world.dso.send(order))[0] == 200
    setpoints = await world.centres["agr-mqtt"].wait_for(1)
    assert setpoints[0]["resource"] == "hp-1" and setpoints[0]["intervals"][0]["values"] == [50.0]
    answer = await world.dso.wait_for(is_kind(FlexOrderResponse))
    assert answer.result is Result.ACCEPTED
    assert answer.envelope.sender_domain == "gridgate.example.com"


async def test_an_order_over_the_limit_is_rejected_naming_isp_limit_and_excess(
    world: World,
) -> None:
    assert (await world.dso.send(world.order({73: -300_000}, ref="first")))[0] == 200
    await world.agr.wait_for(is_kind(FlexOrder))
    second = world.order({72: -100_000, 73: -150_000}, to="agr-mqtt.example.com", ref="second")
    assert (await world.dso.send(second))[0] == 200
    answer = await world.dso.wait_for(
        lambda m: (
            isinstance(m, FlexOrderResponse)
            and m.reference_message_id == second.envelope.message_id
        )
    )
    assert isinstance(answer, FlexOrderResponse)
    assert answer.result is Result.REJECTED
    reason = answer.rejection_reason or ""
    assert reason.startswith("Grid limit exceeded: ISP 73")
    assert f"limit {LIMIT} W by 50000 W" in reason
    await world.settle()
    assert world.centres["agr-mqtt"].received == []  # nothing reached the aggregator
    rejected = await world.audit("message.rejected")
    assert len(rejected) == 1 and "Grid limit exceeded" in rejected[0].detail


async def test_the_request_offer_exchange_is_relayed_both_ways(world: World) -> None:
    request = FlexRequest(
        envelope=world.envelope("dso.example.com", "agr-web.example.com", Role.DSO),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=tomorrow(),
        congestion_point=CP,
        revision=1,
        expiration=datetime.now(UTC) + timedelta(hours=1),
        isps=(RequestIsp(5, -1000, 0),),
    )
    assert (await world.dso.send(request))[0] == 200
    await world.agr.wait_for(is_kind(FlexRequest))
    await world.agr.send(
        FlexRequestResponse(
            envelope=world.envelope("agr-web.example.com", "dso.example.com", Role.AGR),
            reference_message_id=request.envelope.message_id,
            result=Result.ACCEPTED,
        )
    )
    offer = FlexOffer(
        envelope=world.envelope("agr-web.example.com", "dso.example.com", Role.AGR),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=tomorrow(),
        congestion_point=CP,
        expiration=datetime.now(UTC) + timedelta(hours=1),
        currency="EUR",
        flex_request_message_id=request.envelope.message_id,
        options=(OfferOption("A", Decimal("12.50"), (PowerIsp(5, -1000),)),),
    )
    assert (await world.agr.send(offer))[0] == 200
    got = await world.dso.wait_for(is_kind(FlexOffer))
    assert isinstance(got, FlexOffer) and got.options[0].price == Decimal("12.50")
    await world.dso.wait_for(is_kind(FlexRequestResponse))


# -- bad input: a clear error naming the rule, audited, nothing forwarded -------------------


async def assert_nothing_forwarded(world: World) -> None:
    await asyncio.sleep(0.2)
    await world.settle()
    assert world.agr.received == []
    assert all(c.received == [] for c in world.centres.values())


async def test_a_bad_signature_is_401_audited_and_not_forwarded(world: World) -> None:
    body = world.dso.render(world.order({1: 1000}))
    envelope = codec.parse_signed_message(body)
    tampered = bytearray(envelope.body)
    tampered[-20] ^= 0x01
    raw = codec.render_signed_message(envelope.sender_domain, envelope.sender_role, bytes(tampered))
    status, text = await world.dso.post(raw)
    assert status == 401 and "signature" in text.lower()
    assert len(await world.audit("message.rejected")) == 1
    await assert_nothing_forwarded(world)


async def test_an_unknown_sender_is_401(world: World) -> None:
    stranger = Ed25519PrivateKey.generate()
    inner = codec.encode(world.order({1: 1000}, sender="stranger.example.com"))
    raw = codec.render_signed_message(
        "stranger.example.com", Role.DSO, signing.sign(inner, stranger)
    )
    status, text = await world.dso.post(raw)
    assert status == 401 and text.startswith("Unknown SenderDomain")
    await assert_nothing_forwarded(world)


async def test_the_wrong_role_is_rejected_with_invalid_sender_role(world: World) -> None:
    # an aggregator may not order: signed by a real AGR, sent as a FlexOrder
    order = world.order({1: 1000}, sender="agr-web.example.com", to="agr-mqtt.example.com")
    inner = codec.encode(order)
    raw = codec.render_signed_message(
        "agr-web.example.com", Role.AGR, signing.sign(inner, world.agr.key)
    )
    status, _ = await world.agr.post(raw)
    assert status == 200  # received; the rejection is the signed business response
    answer = await world.agr.wait_for(is_kind(FlexOrderResponse))
    assert isinstance(answer, FlexOrderResponse) and answer.result is Result.REJECTED
    assert (answer.rejection_reason or "").startswith("Invalid SenderRole")
    assert len(await world.audit("message.rejected")) == 1
    assert world.centres["agr-mqtt"].received == []


async def test_ordering_on_another_dsos_congestion_point_is_rejected(world: World) -> None:
    order = world.order({1: 1000}, sender="dso2.example.com", cp=CP)
    assert (await world.other_dso.send(order))[0] == 200
    answer = await world.other_dso.wait_for(is_kind(FlexOrderResponse))
    assert isinstance(answer, FlexOrderResponse)
    assert (answer.rejection_reason or "").startswith("Invalid CongestionPoint")
    await assert_nothing_forwarded(world)


async def test_a_schema_invalid_message_is_400_naming_the_attribute(world: World) -> None:
    inner = codec.encode(world.order({1: 1000})).replace(b' Currency="EUR"', b"")
    raw = codec.render_signed_message(
        "dso.example.com", Role.DSO, signing.sign(inner, world.dso.key)
    )
    status, text = await world.dso.post(raw)
    assert status == 400 and "Currency" in text
    assert len(await world.audit("message.rejected")) == 1
    await assert_nothing_forwarded(world)


async def test_a_dtd_is_refused_without_reading_anything(world: World) -> None:
    inner = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/hostname">]>'
        + codec.encode(world.order({1: 1000})).split(b"?>", 1)[1]
    )
    raw = codec.render_signed_message(
        "dso.example.com", Role.DSO, signing.sign(inner, world.dso.key)
    )
    status, text = await world.dso.post(raw)
    assert status == 400 and "DTD" in text
    await assert_nothing_forwarded(world)


async def test_oversize_and_transport_rules(world: World) -> None:
    async with aiohttp.ClientSession() as session:
        big = b"<SignedMessage " + b" " * (6 * 1024 * 1024) + b"/>"
        async with session.post(world.url, data=big, headers={"Content-Type": "text/xml"}) as r:
            assert r.status == 413
        async with session.post(
            world.url, data=b"<x/>", headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400 and "Content-Type" in await r.text()

        async def chunks() -> AsyncIterator[bytes]:
            yield b"<x/>"

        async with session.post(
            world.url, data=chunks(), headers={"Content-Type": "text/xml"}
        ) as r:
            assert r.status == 411
    await assert_nothing_forwarded(world)
    refused = await world.audit("message.refused")
    assert [json.loads(e.detail)["status"] for e in refused] == [413, 400, 411]
    assert json.loads(refused[0].detail)["rule"] == "Invalid Message (too large)"


async def test_application_xml_is_accepted_too(world: World) -> None:
    status, _ = await world.dso.post(
        world.dso.render(world.order({1: 1000})), content_type="application/xml"
    )
    assert status == 200
    await world.agr.wait_for(is_kind(FlexOrder))


async def test_a_resubmission_is_accepted_once_and_a_reused_id_is_a_duplicate_identifier(
    world: World,
) -> None:
    order = world.order({1: 1000})
    raw = world.dso.render(order)
    assert (await world.dso.post(raw))[0] == 200
    assert (await world.dso.post(raw))[0] == 200  # Already Submitted: success, not reprocessed
    reuse = world.order({1: 2000}, message_id=order.envelope.message_id)
    assert (await world.dso.send(reuse))[0] == 200
    answer = await world.dso.wait_for(is_kind(FlexOrderResponse))
    assert isinstance(answer, FlexOrderResponse)
    assert (answer.rejection_reason or "").startswith("Duplicate Identifier")
    await world.settle()
    await asyncio.sleep(0.2)
    assert len(world.agr.received) == 1  # forwarded exactly once
    assert len(await world.audit("message.resubmitted")) == 1
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 1) == 1000


async def test_the_rate_limit_answers_429(world: World) -> None:
    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(
            *(
                session.post(world.url, data=b"<x/>", headers={"Content-Type": "text/xml"})
                for _ in range(400)
            )
        )
        codes = [r.status for r in statuses]
        for r in statuses:
            r.release()
    assert 429 in codes


async def test_a_bad_ack_is_audited_with_the_rule(world: World) -> None:
    prefix = world.centres["agr-web"].prefix
    async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as client:
        await client.publish(f"{prefix}/bat-1/ack", b'{"msgId": 5}', qos=1)
    for _ in range(50):
        bad = await world.audit("setpoint.ack.rejected")
        if bad:
            break
        await asyncio.sleep(0.05)
    assert bad and "Schema violation" in bad[0].detail


async def test_a_duplicate_older_than_the_index_is_still_caught_by_the_database(
    world: World,
) -> None:
    world.gateway.pipeline.seen_limit = 1
    first = world.order({1: 1000})
    raw = world.dso.render(first)
    assert (await world.dso.post(raw))[0] == 200
    assert (await world.dso.send(world.order({2: 1000})))[0] == 200  # pushes `first` out
    assert (await world.dso.post(raw))[0] == 200  # already submitted, found in the database
    reuse = world.order({1: 5}, message_id=first.envelope.message_id)
    assert (await world.dso.send(reuse))[0] == 200
    answer = await world.dso.wait_for(
        lambda m: isinstance(m, FlexOrderResponse) and m.result is Result.REJECTED
    )
    assert (getattr(answer, "rejection_reason", "") or "").startswith("Duplicate Identifier")
    await world.settle()
    assert len(world.agr.received) == 2
    assert len(await world.audit("message.resubmitted")) == 1
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 1) == 1000


async def test_a_forged_outbound_payload_is_found_by_the_verifier(world: World) -> None:
    assert (await world.dso.send(world.order({3: 1000})))[0] == 200
    await world.agr.wait_for(is_kind(FlexOrder))
    await world.settle()
    async with sessionmaker(world.gateway.engine)() as session:
        assert (await verify_chain(session)).ok
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.channel == "mqtt")
            .values(payload=b'{"forged": true}')
        )
        await session.commit()
        report = await verify_chain(session)
    accepted = await world.audit("message.accepted")
    assert not report.ok and report.first_broken == accepted[0].seq
    assert "does not hold the payload the entry recorded" in (report.problem or "")


async def test_a_relay_that_falls_behind_slows_senders_down_with_429(world: World) -> None:
    await world.gateway.outbox.stop()  # nothing is delivered: the backlog only grows
    statuses = [(await world.dso.send(world.order({i: 10}, ref=f"o{i}")))[0] for i in range(1, 26)]
    # each order leaves three rows behind (the forward and two setpoints): 20 is 7 orders
    assert statuses[:6] == [200] * 6
    assert 429 in statuses
    world.gateway.outbox.start()
    await world.settle()  # and once it delivers again, the backlog drains
    assert world.gateway.outbox.backlog == 0


# -- the market's rules, response references, in-flight duplicates (review fixes) ----------


async def rejected_reason(world: World, message: Message) -> str:
    """Send a DSO message, expect gridgate's signed rejection; return its reason."""
    assert (await world.dso.send(message))[0] == 200
    answer = await world.dso.wait_for(
        lambda m: (
            isinstance(m, FlexResponse) and m.reference_message_id == message.envelope.message_id
        )
    )
    assert isinstance(answer, FlexResponse) and answer.result is Result.REJECTED
    return answer.rejection_reason or ""


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"isps": (PowerIsp(97, 1000),)}, "ISPs out of bounds: ISP Start 97 Duration 1 is outside"),
        (
            {"isps": (PowerIsp(90, 1000, duration=8),)},
            "ISPs out of bounds: ISP Start 90 Duration 8",
        ),
        ({"isps": (PowerIsp(5, 900_000), PowerIsp(5, 0))}, "ISP conflict: ISP 5 is given twice"),
        ({"isps": (PowerIsp(4, 1, duration=2), PowerIsp(5, 0))}, "ISP conflict: ISP 5"),
        ({"isp_duration": timedelta(minutes=30)}, "ISP duration rejected: ISP-Duration PT30M"),
        ({"time_zone": "Europe/Berlin"}, "TimeZone rejected: TimeZone Europe/Berlin"),
        ({"period": date(2026, 1, 1)}, "Period out of bounds: Period 2026-01-01 has ended"),
    ],
)
async def test_an_order_that_does_not_fit_the_market_is_rejected_and_not_checked(
    world: World, change: dict[str, Any], rule: str
) -> None:
    """UFTP 3 validation: ISPs within the Period, not overlapping; the market's ISP-Duration
    and TimeZone; a Period that has not ended."""
    order = replace(world.order({1: 1}), **change)
    assert (await rejected_reason(world, order)).startswith(rule)
    await assert_nothing_forwarded(world)
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 5) == 0


async def test_a_request_expiring_after_its_last_isp_is_rejected(world: World) -> None:
    request = FlexRequest(
        envelope=world.envelope("dso.example.com", "agr-web.example.com", Role.DSO),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=tomorrow(),
        congestion_point=CP,
        revision=1,
        expiration=datetime.now(UTC) + timedelta(days=3),
        isps=(RequestIsp(5, -1000, 0),),
    )
    assert (await rejected_reason(world, request)).startswith("ExpirationDateTime out of bounds")
    await assert_nothing_forwarded(world)


async def test_a_request_to_an_aggregator_without_resources_there_is_rejected(
    world: World,
) -> None:
    request = FlexRequest(
        envelope=world.envelope("dso2.example.com", "agr-web.example.com", Role.DSO),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=tomorrow(),
        congestion_point=OTHER_CP,
        revision=1,
        expiration=datetime.now(UTC) + timedelta(hours=1),
        isps=(RequestIsp(5, -1000, 0),),
    )
    assert (await world.other_dso.send(request))[0] == 200
    answer = await world.other_dso.wait_for(is_kind(FlexRequestResponse))
    assert (getattr(answer, "rejection_reason", "") or "").startswith("Unregistered resources")
    await assert_nothing_forwarded(world)


async def test_the_same_message_id_to_another_aggregator_is_checked_on_its_own(
    world: World,
) -> None:
    first = world.order({7: -300_000})
    assert (await world.dso.send(first))[0] == 200
    await world.agr.wait_for(is_kind(FlexOrder))
    reuse = world.order(
        {7: -300_000}, to="agr-mqtt.example.com", message_id=first.envelope.message_id
    )
    assert (await rejected_reason(world, reuse)).startswith("Grid limit exceeded: ISP 7")
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 7) == -300_000
    await world.settle()
    assert len(world.agr.received) == 1 and world.centres["agr-mqtt"].received == []


async def test_a_response_must_answer_a_message_that_went_the_other_way(world: World) -> None:
    order = world.order({3: 1000})
    assert (await world.dso.send(order))[0] == 200
    await world.agr.wait_for(is_kind(FlexOrder))
    # an answer to an order that never existed
    unknown = FlexOrderResponse(
        envelope=world.envelope("agr-web.example.com", "dso.example.com", Role.AGR),
        reference_message_id=str(uuid.uuid4()),
        result=Result.ACCEPTED,
    )
    status, text = await world.agr.send(unknown)
    assert status == 400 and text.startswith("Unknown reference: Unknown FlexOrderMessageID")
    # the right order, but this aggregator was not its recipient
    foreign = FlexOrderResponse(
        envelope=world.envelope("agr-mqtt.example.com", "dso.example.com", Role.AGR),
        reference_message_id=order.envelope.message_id,
        result=Result.ACCEPTED,
    )
    raw = codec.render_signed_message(
        "agr-mqtt.example.com", Role.AGR, signing.sign(codec.encode(foreign), world.agr_mqtt_key)
    )
    status, text = await world.agr.post(raw)
    assert status == 400 and "Unknown reference" in text
    # the right order from its recipient, in another conversation
    elsewhere = FlexOrderResponse(
        envelope=replace(
            world.envelope("agr-web.example.com", "dso.example.com", Role.AGR),
            conversation_id=str(uuid.uuid4()),
        ),
        reference_message_id=order.envelope.message_id,
        result=Result.ACCEPTED,
    )
    status, text = await world.agr.send(elsewhere)
    assert status == 400 and "belongs to conversation" in text
    await world.settle()
    assert not [m for m in world.dso.received if isinstance(m, FlexOrderResponse)]


async def test_two_copies_in_flight_are_stored_and_forwarded_once(world: World) -> None:
    raw = world.dso.render(world.order({2: 1000}))
    statuses = await asyncio.gather(*(world.dso.post(raw) for _ in range(5)))
    assert [s for s, _ in statuses] == [200] * 5
    await world.agr.wait_for(is_kind(FlexOrder))
    await world.settle()
    await asyncio.sleep(0.2)
    assert len(world.agr.received) == 1
    assert len(await world.audit("message.accepted")) == 1
    assert len(await world.audit("message.resubmitted")) == 4


async def test_a_copy_of_a_message_whose_commit_fails_is_not_told_it_was_stored(
    world: World,
) -> None:
    writer = world.gateway.writer
    real_submit = writer.submit
    failed = asyncio.Event()

    async def failing_once(unit: Any) -> Any:
        if unit.messages and not failed.is_set():
            await asyncio.sleep(0.2)  # the copy arrives while the first waits
            failed.set()
            raise ConnectionError("the database went away")
        return await real_submit(unit)

    writer.submit = failing_once  # type: ignore[method-assign]
    raw = world.dso.render(world.order({2: 1000}))
    first, copy = await asyncio.gather(world.dso.post(raw), world.dso.post(raw))
    assert first[0] == 503 and copy[0] == 503  # neither may believe it was stored
    assert (await world.dso.post(raw))[0] == 200  # the sender's retry goes through
    await world.agr.wait_for(is_kind(FlexOrder))
    await world.settle()
    assert len(world.agr.received) == 1


async def test_what_no_participant_signed_is_audited_by_digest_not_stored(world: World) -> None:
    junk = b"<SignedMessage SenderDomain='x.example.com' SenderRole='DSO' Body='AAAA'/>"
    status, _ = await world.dso.post(junk + b" " * 100_000)
    assert status in (400, 401)
    (entry,) = await world.audit("message.rejected")
    assert entry.body is None
    assert entry.body_digest == hashlib.sha256(junk + b" " * 100_000).hexdigest()
    assert json.loads(entry.detail)["head"].startswith("<SignedMessage")
    async with sessionmaker(world.gateway.engine)() as session:
        assert (await verify_chain(session)).ok
        # a stored body that disappears is noticed
        await session.execute(
            update(AuditEntry).where(AuditEntry.event == "setpoint.ack").values(body=None)
        )
        accepted = world.order({1: 1})
        await session.commit()
    assert (await world.dso.send(accepted))[0] == 200
    await world.settle()
    async with sessionmaker(world.gateway.engine)() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.event == "message.accepted").values(body=None)
        )
        await session.commit()
        report = await verify_chain(session)
    assert not report.ok and "its body was removed" in (report.problem or "")


async def test_an_ack_for_a_setpoint_never_sent_is_audited_as_unknown(world: World) -> None:
    prefix = world.centres["agr-mqtt"].prefix
    ack = (
        b'{"msgId": "' + str(uuid.uuid4()).encode() + b'", "correlationId": "x", '
        b'"status": "ACCEPTED", "ts": "2026-11-27T10:00:00+00:00"}'
    )
    async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as client:
        await client.publish(f"{prefix}/hp-1/ack", ack, qos=1)
    for _ in range(50):
        unknown = await world.audit("setpoint.ack.rejected")
        if unknown:
            break
        await asyncio.sleep(0.05)
    assert unknown and "Unknown setpoint" in unknown[0].detail
    assert await world.audit("setpoint.ack") == []
