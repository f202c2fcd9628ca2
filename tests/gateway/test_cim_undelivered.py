"""An order gridgate wrote for an ISO's CIM activation that never reaches the aggregator, end
to end, on both databases.

The aggregator's UFTP endpoint goes down after gridgate accepted the activation; its order
expires in the outbox (its expiry is moved to now, as if its day were over) or is refused
for good. Carried out nowhere, it is the aggregator's refusal: its power goes back to the grid
check and the ISO gets the TimeSeries' A41, unavailable, naming the unreachable aggregator. A
late answer from the aggregator is refused. With setpoints at the control centre (the real
Mosquitto) the order stands.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from adapters.cim.documents import AcknowledgementDocument, ActivationDocument
from adapters.cim.parse import parse
from gateway.model import FlexOrder
from gateway.store.db import sessionmaker
from gateway.store.models import MessageRecord, OutboxEntry
from tests.gateway.test_cim_activation import (
    AGR,
    GRIDGATE,
    RESOURCE,
    World,
    accept,
    activation,
    activation_of,
    iso_documents,
    open_world,
    over_midnight,
    post,
)
from tests.gateway.world import booked_power, undelivered_entry


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, database_url) as opened:
        yield opened


def without_control_centre(world: World) -> None:
    """The aggregator is reached over UFTP only: an order is carried out nowhere else."""
    directory = world.gateway.pipeline.directory
    agr = replace(directory.participants["agr"], mqtt_prefix=None)
    directory.participants["agr"] = directory.by_domain[AGR] = agr
    directory.by_cim_resource[RESOURCE] = (agr, directory.by_cim_resource[RESOURCE][1])


async def aggregator_down(world: World) -> None:
    """The aggregator's UFTP endpoint stops answering (it can still post to gridgate)."""
    runner, world.agr._runner = world.agr._runner, None
    assert runner is not None
    await runner.cleanup()


async def order_rows(world: World, count: int) -> list[OutboxEntry]:
    """The outbox rows of `count` orders to the aggregator, once each failed an attempt."""
    for _ in range(200):
        async with sessionmaker(world.gateway.engine)() as session:
            rows = list(
                (
                    await session.scalars(
                        select(OutboxEntry)
                        .where(
                            OutboxEntry.channel == "uftp",
                            OutboxEntry.recipient == "agr",
                            OutboxEntry.status == "pending",
                            OutboxEntry.attempts >= 1,
                        )
                        .order_by(OutboxEntry.id)
                    )
                ).all()
            )
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} undelivered orders expected, got {len(rows)}")


async def expire(world: World, rows: list[OutboxEntry]) -> list[FlexOrder]:
    """Let the orders of `rows` expire now (as if their day were over); return them."""
    now = datetime.now(UTC)
    async with sessionmaker(world.gateway.engine)() as session, session.begin():
        await session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id.in_([r.id for r in rows]))
            .values(expires_at=now, next_attempt_at=now)
        )
    world.gateway.outbox.wake()
    orders = [world.gateway.pipeline.codec.reread(r.payload) for r in rows]
    assert all(isinstance(o, FlexOrder) for o in orders)
    return orders  # type: ignore[return-value]


async def acknowledged(world: World, body: bytes) -> str:
    """Post an activation; return its acknowledgement's code (A01 accepted, A02 refused)."""
    status, answer = await post(world, body)
    assert status == 200
    ack = parse(answer)
    assert isinstance(ack, AcknowledgementDocument)
    return ack.reasons[0].code


def a41_of(raw: bytes) -> ActivationDocument:
    document = parse(raw)
    assert isinstance(document, ActivationDocument) and document.type == "A41"
    return document


async def test_an_undelivered_order_is_rejected_to_the_iso_and_unbooked(world: World) -> None:
    without_control_centre(world)
    await aggregator_down(world)
    mrid, series, body = activation("0.3", minutes=15)  # 300 kW of the 400 kW limit
    assert await acknowledged(world, body) == "A01"
    # booked: a second 300 kW does not fit beside it
    _, _, second = activation("0.3", minutes=15)
    assert await acknowledged(world, second) == "A02"
    (order,) = await expire(world, await order_rows(world, 1))
    order_id = order.envelope.message_id

    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    (a41,) = [a41_of(raw) for raw in world.iso.received]
    assert a41.order_mrid == mrid
    ((answered, status),) = [(s.mrid, s.status) for s in a41.time_series]
    assert (answered, status) == (series, "A11")  # unavailable
    (reason,) = a41.time_series[0].reasons
    assert reason.code == "A95"
    assert (reason.text or "").startswith(
        "Recipient unreachable: agr could not be reached before the message expired"
    )

    entry = await undelivered_entry(world.gateway, order_id)
    assert entry["outcome"] == "expired" and entry["kind"] == "FlexOrder"
    assert entry["unbooked"] == -300_000
    assert entry["answered"]["result"] == "Rejected"
    assert [o["what"] for o in entry["out"]] == ["unbooked", "A41 response"]
    assert await booked_power(world.gateway, order_id) == 0
    # the grid check no longer holds it: the second activation fits now
    _, _, again = activation("0.3", minutes=15)
    assert await acknowledged(world, again) == "A01"


async def test_an_order_the_aggregator_refuses_for_good_is_rejected_to_the_iso(
    world: World,
) -> None:
    without_control_centre(world)
    del world.agr.trusted[GRIDGATE]  # it answers gridgate's order with 401: final
    _, series, body = activation("0.1", minutes=15)
    assert await acknowledged(world, body) == "A01"
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    (a41,) = [a41_of(raw) for raw in world.iso.received]
    assert [(s.mrid, s.status) for s in a41.time_series] == [(series, "A11")]
    (reason,) = a41.time_series[0].reasons
    assert (reason.text or "").startswith("Recipient unreachable: agr refused the message")
    async with sessionmaker(world.gateway.engine)() as session:
        order_id = await session.scalar(
            select(OutboxEntry.message_id).where(
                OutboxEntry.channel == "uftp", OutboxEntry.recipient == "agr"
            )
        )
    assert order_id is not None
    entry = await undelivered_entry(world.gateway, order_id)
    assert entry["outcome"] == "failed" and entry["unbooked"] == -100_000
    assert await booked_power(world.gateway, order_id) == 0


async def test_an_undelivered_order_whose_setpoints_went_out_stands(world: World) -> None:
    await aggregator_down(world)
    _, _, body = activation("0.3", minutes=15)
    assert await acknowledged(world, body) == "A01"
    assert await world.centre.wait_for(1)  # the control centre carries it out
    (order,) = await expire(world, await order_rows(world, 1))
    order_id = order.envelope.message_id

    entry = await undelivered_entry(world.gateway, order_id)
    assert entry["outcome"] == "expired"
    assert entry["order"] == "stands: its setpoints went to the control centre"
    assert "answered" not in entry and "unbooked" not in entry
    await asyncio.sleep(0.5)
    assert world.iso.received == []  # no A41 says it was not carried out
    assert await booked_power(world.gateway, order_id) == -300_000
    _, _, second = activation("0.3", minutes=15)
    assert await acknowledged(world, second) == "A02"  # its power is still booked


async def test_a_late_answer_to_an_undelivered_order_is_refused(world: World) -> None:
    without_control_centre(world)
    await aggregator_down(world)
    _, _, body = activation("0.1", minutes=15)
    assert await acknowledged(world, body) == "A01"
    (order,) = await expire(world, await order_rows(world, 1))
    await asyncio.wait_for(world.iso.arrived.wait(), 10)

    status, text = await world.agr.send(accept(order))
    assert status == 400 and text.startswith("Reference message already answered")
    assert "could not be delivered" in text
    # after a restart too: the database holds gridgate's answer in the aggregator's stead
    world.gateway.pipeline._stood_in.clear()
    status, text = await world.agr.send(accept(order))
    assert status == 400 and text.startswith("Reference message already answered")
    await asyncio.sleep(0.5)
    (a41,) = [a41_of(raw) for raw in world.iso.received]  # no second A41
    assert a41.time_series[0].status == "A11"
    async with sessionmaker(world.gateway.engine)() as session:
        answers = (
            await session.scalars(
                select(MessageRecord.sender_domain).where(
                    MessageRecord.reference == order.envelope.message_id,
                    MessageRecord.kind == "FlexOrderResponse",
                    MessageRecord.decision == "accepted",
                )
            )
        ).all()
    assert answers == [GRIDGATE]


@pytest.mark.parametrize("lost_first", [False, True])
async def test_a_time_series_over_two_days_with_one_order_undelivered_gets_one_a41(
    world: World, lost_first: bool
) -> None:
    without_control_centre(world)
    await aggregator_down(world)
    mrid, series, body = activation_of(over_midnight(), timedelta(minutes=15), ["0.1", "0.1"])
    assert await acknowledged(world, body) == "A01"
    rows = await order_rows(world, 2)
    lost_row, reached_row = rows if lost_first else rows[::-1]
    # one order reached the aggregator some other way: it accepts it
    reached = world.gateway.pipeline.codec.reread(reached_row.payload)
    assert isinstance(reached, FlexOrder)
    if lost_first:
        (lost,) = await expire(world, [lost_row])
        await undelivered_entry(world.gateway, lost.envelope.message_id)
        # as after a restart: gridgate's answer to the lost order is read back from the database
        world.gateway.pipeline._answering.clear()
        assert await world.agr.send(accept(reached)) == (200, "")
    else:
        assert await world.agr.send(accept(reached)) == (200, "")
        await asyncio.sleep(0.3)
        assert world.iso.received == []  # the TimeSeries is not answered by half
        (lost,) = await expire(world, [lost_row])

    (a41,) = await iso_documents(world, 1)
    assert isinstance(a41, ActivationDocument) and a41.order_mrid == mrid
    assert [(s.mrid, s.status) for s in a41.time_series] == [(series, "A11")]
    (reason,) = a41.time_series[0].reasons
    assert reason.text is not None and lost.envelope.message_id in reason.text
    assert "Recipient unreachable: agr could not be reached" in reason.text
    entry = await undelivered_entry(world.gateway, lost.envelope.message_id)
    assert entry["unbooked"] == -100_000
    assert await booked_power(world.gateway, lost.envelope.message_id) == 0
    # the accepted day stays booked
    assert await booked_power(world.gateway, reached.envelope.message_id) == -100_000
