"""The cross-message rules, the CRO and the undelivered report under pressure: messages in
flight at once, failed commits, long congestion points, need-to-know, orders that never
arrived. Each docstring names the rule it holds gridgate to.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from gateway.app import Gateway
from gateway.model import (
    AGRPortfolioQuery,
    AGRPortfolioUpdate,
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    FlexOrder,
    FlexOrderResponse,
    FlexResponse,
    PortfolioCongestionPoint,
    PortfolioConnection,
    RedispatchBy,
    Result,
    Role,
)
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, LedgerEntry, MessageRecord
from tests.gateway.test_rules import (
    AGR,
    DSO,
    GRIDGATE,
    answer_to,
    offer,
    offered,
    order_for,
    request,
    revocation,
)
from tests.gateway.world import (
    CP,
    OTHER_CP,
    ZONE,
    World,
    booked_power,
    is_kind,
    tomorrow,
    undelivered_entry,
)

HOUSE = "ean.871685900000000101"  # agr-web's bat-1, on dso's CP
HP = "ean.871685900000000201"  # agr-mqtt's heat pump connection (operator config)


async def _accepted(world: World, *message_ids: str) -> list[str]:
    async with sessionmaker(world.gateway.engine)() as session:
        rows = await session.scalars(
            select(MessageRecord.message_id).where(
                MessageRecord.message_id.in_(message_ids),
                MessageRecord.decision == "accepted",
            )
        )
        return list(rows.all())


# -- 1. double consumption of an offer under concurrency ------------------------------------


async def test_two_orders_in_flight_for_one_offer_cannot_both_pass(world: World) -> None:
    """docs/uftp.md: 'Two messages in flight for the same offer ... cannot both pass: the
    first holds a claim until its commit settles it.'"""
    made = await offered(world, offer(world))
    orders = [order_for(world, made) for _ in range(4)]
    pipeline = world.gateway.pipeline
    await asyncio.gather(*(pipeline.handle(world.dso.render(o)) for o in orders))
    passed = await _accepted(world, *(o.envelope.message_id for o in orders))
    assert len(passed) == 1, f"the offer was ordered {len(passed)} times: {passed}"


async def test_an_order_and_a_revocation_in_flight_cannot_both_pass(world: World) -> None:
    """UFTP 3: 'ordered offers cannot be revoked' -- nor may a revoked offer be ordered."""
    made = await offered(world, offer(world))
    pipeline = world.gateway.pipeline
    raws, ids = [], []
    for _ in range(2):
        bought, withdrawn = order_for(world, made), revocation(world, made)
        raws += [world.dso.render(bought), world.agr.render(withdrawn)]
        ids += [bought.envelope.message_id, withdrawn.envelope.message_id]
    await asyncio.gather(*(pipeline.handle(raw) for raw in raws))
    passed = await _accepted(world, *ids)
    assert len(passed) == 1, f"the offer was consumed {len(passed)} times: {passed}"


# -- 1. claims leak when the commit fails --------------------------------------------------


def _fail_commit_of(world: World, kind: str) -> Any:
    writer = world.gateway.writer
    real_submit = writer.submit
    failed = asyncio.Event()

    async def failing_once(unit: Any) -> Any:
        if not failed.is_set() and any(m["kind"] == kind for m in unit.messages):
            failed.set()
            raise ConnectionError("the database went away")
        return await real_submit(unit)

    writer.submit = failing_once
    return real_submit


async def test_an_order_retried_after_a_failed_commit_goes_through(world: World) -> None:
    """A 503 says 'send it again later': the same order again must not be refused as
    'Reference message already ordered' by the claim its failed first attempt left."""
    made = await offered(world, offer(world))
    bought = order_for(world, made)
    _fail_commit_of(world, "FlexOrder")
    raw = world.dso.render(bought)
    assert (await world.dso.post(raw))[0] == 503
    assert await world.dso.post(raw) == (200, "")
    await world.settle()
    answers = [
        m
        for m in world.dso.received
        if isinstance(m, FlexResponse) and m.reference_message_id == bought.envelope.message_id
    ]
    assert not answers, f"the retry was refused: {answers}"
    assert await _accepted(world, bought.envelope.message_id) == [bought.envelope.message_id]


async def test_a_request_retried_after_a_failed_commit_goes_through(world: World) -> None:
    """The same for a Revision: the retry of the very message is not 'out of sequence'."""
    asked = request(world, revision=7)
    _fail_commit_of(world, "FlexRequest")
    raw = world.dso.render(asked)
    assert (await world.dso.post(raw))[0] == 503
    assert await world.dso.post(raw) == (200, "")
    await world.settle()
    assert await _accepted(world, asked.envelope.message_id) == [asked.envelope.message_id]


# -- 1. a rejection that cannot be audited (the new `subject` column) -----------------------


async def test_a_long_ea1_congestion_point_is_still_audited(world: World) -> None:
    """XSD EntityAddress allows `ea1.YYYY-MM.<244>:<244>`; messages.subject is 255 long.
    A message rejected for its congestion point must still be audited and answered."""
    long_cp = "ea1.2024-01.nl." + "x" * 240 + ":" + "1" * 40
    asked = replace(request(world), congestion_point=long_cp)
    status, text = await world.dso.send(asked)
    assert (status, text) == (200, ""), (status, text)
    async with sessionmaker(world.gateway.engine)() as session:
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.message_id == asked.envelope.message_id)
            )
        ).all()
    assert [e.event for e in entries] == ["message.rejected"]


# -- 2. the CRO reveals what the asker has no need to know -------------------------------


async def test_an_aggregator_cannot_register_another_aggregators_connection(
    world: World,
) -> None:
    """NOTES §7: 'The CRO reveals a congestion point only on a need-to-know basis.' HP is
    agr-mqtt's connection by the operator config; agr-web must not learn where it lies,
    nor appear to the DSO as its aggregator."""
    start = tomorrow() - timedelta(days=1)
    dso_update = DSOPortfolioUpdate(
        envelope=world.envelope(DSO, GRIDGATE, Role.DSO),
        time_zone=ZONE,
        congestion_points=(
            PortfolioCongestionPoint(
                CP, start, True, RedispatchBy.DSO, (PortfolioConnection(HP, start),)
            ),
        ),
    )
    assert await world.dso.send(dso_update) == (200, "")
    assert (await answer_to(world.dso, dso_update)).result is Result.ACCEPTED
    grab = AGRPortfolioUpdate(
        envelope=world.envelope(AGR, GRIDGATE, Role.AGR),
        time_zone=ZONE,
        connections=(PortfolioConnection(HP, start),),
    )
    assert await world.agr.send(grab) == (200, "")
    registered = await answer_to(world.agr, grab)
    assert registered.result is Result.REJECTED
    assert (registered.rejection_reason or "").startswith("Unregistered resources")
    # agr-web registered nothing, so it is told nothing about where HP lies
    ask = AGRPortfolioQuery(
        envelope=world.envelope(AGR, GRIDGATE, Role.AGR), time_zone=ZONE, period=tomorrow()
    )
    status, text = await world.agr.send(ask)
    assert status == 400 and CP not in text
    dso_ask = DSOPortfolioQuery(
        envelope=world.envelope(DSO, GRIDGATE, Role.DSO),
        time_zone=ZONE,
        period=tomorrow(),
        entity_address=CP,
    )
    assert await world.dso.send(dso_ask) == (200, "")
    dso_view = await answer_to(world.dso, dso_ask)
    assert isinstance(dso_view, DSOPortfolioQueryResponse)
    assert {c.entity_address: c.agr_domain for c in dso_view.connections} == {HP: None}


async def test_a_dso_cannot_learn_the_aggregators_of_another_dsos_connections(
    world: World,
) -> None:
    """NOTES §7 need-to-know: HOUSE lies on dso's CP (operator config: agr-web's bat-1).
    dso2 registers HOUSE under its own congestion point and asks who serves it."""
    start = tomorrow() - timedelta(days=1)
    agr_update = AGRPortfolioUpdate(
        envelope=world.envelope(AGR, GRIDGATE, Role.AGR),
        time_zone=ZONE,
        connections=(PortfolioConnection(HOUSE, start),),
    )
    assert await world.agr.send(agr_update) == (200, "")
    await answer_to(world.agr, agr_update)
    dso2 = "dso2.example.com"
    claim = DSOPortfolioUpdate(
        envelope=world.envelope(dso2, GRIDGATE, Role.DSO),
        time_zone=ZONE,
        congestion_points=(
            PortfolioCongestionPoint(
                OTHER_CP, start, True, RedispatchBy.DSO, (PortfolioConnection(HOUSE, start),)
            ),
        ),
    )
    assert await world.other_dso.send(claim) == (200, "")
    await answer_to(world.other_dso, claim)
    ask = DSOPortfolioQuery(
        envelope=world.envelope(dso2, GRIDGATE, Role.DSO),
        time_zone=ZONE,
        period=tomorrow(),
        entity_address=OTHER_CP,
    )
    assert await world.other_dso.send(ask) == (200, "")
    view = await answer_to(world.other_dso, ask)
    leaked = isinstance(view, DSOPortfolioQueryResponse) and any(
        c.entity_address == HOUSE and c.agr_domain == AGR for c in view.connections
    )
    assert not leaked, f"dso2 learned that {AGR} serves {HOUSE}, a connection on dso's {CP}"


# -- 4. the undelivered hook and a FlexOrder whose setpoints went out -------------------------


async def test_an_undelivered_order_whose_setpoints_went_out_stands(
    world: World,
) -> None:
    """A FlexOrder the aggregator's UFTP endpoint refuses for good, while its control
    centre got the setpoints, is being carried out: the DSO is not told Rejected, the power
    stays booked, and the audit says the UFTP copy did not arrive."""
    del world.agr.trusted[DSO]  # agr-web answers the forwarded order with 401: final
    order = world.order({40: -10_000})
    assert await world.dso.send(order) == (200, "")
    assert await world.centres["agr-web"].wait_for(2)
    entry = await undelivered_entry(world.gateway, order.envelope.message_id)
    assert entry["order"].startswith("stands") and entry["outcome"] == "failed"
    assert await booked_power(world.gateway, order.envelope.message_id) == -10_000
    assert not [
        m
        for m in world.dso.received
        if isinstance(m, FlexOrderResponse) and m.reference_message_id == order.envelope.message_id
    ]


async def test_an_undelivered_order_carried_out_nowhere_is_rejected_and_unbooked(
    world: World,
) -> None:
    directory = world.gateway.directory
    agr = directory.participants["agr-web"]
    no_centre = replace(agr, mqtt_prefix=None)
    directory.participants["agr-web"] = directory.by_domain[AGR] = no_centre
    del world.agr.trusted[DSO]
    order = world.order({40: -10_000})
    assert await world.dso.send(order) == (200, "")
    told = await world.dso.wait_for(
        lambda m: (
            isinstance(m, FlexOrderResponse) and m.reference_message_id == order.envelope.message_id
        )
    )
    assert isinstance(told, FlexOrderResponse) and told.result is Result.REJECTED
    assert (told.rejection_reason or "").startswith("Recipient unreachable")
    entry = await undelivered_entry(world.gateway, order.envelope.message_id)
    assert entry["unbooked"] == -10_000
    assert await booked_power(world.gateway, order.envelope.message_id) == 0
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 40) == 0


# -- 5. one MessageID, two aggregators --------------------------------------------------------

MQTT_AGR = "agr-mqtt.example.com"


async def _held_by_recipient(world: World, order_message_id: str) -> dict[str | None, int]:
    """What the `ledger` table holds for a MessageID per recipient domain (W)."""
    async with world.gateway.engine.connect() as conn:
        rows = await conn.execute(
            select(LedgerEntry.recipient_domain, LedgerEntry.power).where(
                LedgerEntry.order_message_id == order_message_id
            )
        )
        held: dict[str | None, int] = {}
        for recipient, power in rows:
            held[recipient] = held.get(recipient, 0) + power
    return held


async def _restart(world: World) -> None:
    """Stop gridgate and start a new one on the same config and database."""
    settings = world.gateway.settings
    await world.gateway.stop()
    gateway = Gateway(settings)
    await gateway.start()
    world.gateway = gateway
    world.url = f"http://127.0.0.1:{gateway.port}/shapeshifter/api/v3/message"
    for peer in (world.dso, world.other_dso, world.agr):
        peer.gateway_url = world.url


async def test_a_message_id_reused_toward_two_aggregators_is_unbooked_per_aggregator(
    world: World,
) -> None:
    """UFTP keys a message by (MessageID, sender, recipient): the DSO's MessageID ordered of
    agr-mqtt (carried out by its control centre) and of agr-web (UFTP only) is two orders.
    agr-web's Rejected gives back its own order's power, never agr-mqtt's, in the check and
    in the ledger table (the ledger must never hold less than the devices may do), and a
    restart rebuilds exactly the order that stands."""
    directory = world.gateway.directory
    uftp_only = replace(directory.participants["agr-web"], mqtt_prefix=None)
    directory.participants["agr-web"] = directory.by_domain[AGR] = uftp_only
    grid = world.gateway.grid_check
    # agr-mqtt's order first: a check keyed by (origin, MessageID) alone would then give
    # agr-mqtt's power back when agr-web refuses
    kept = world.order({40: -30_000}, to=MQTT_AGR)
    message_id = kept.envelope.message_id
    assert await world.dso.send(kept) == (200, "")
    confirmed = await answer_to(world.dso, kept)
    assert isinstance(confirmed, FlexOrderResponse) and confirmed.result is Result.ACCEPTED
    assert await world.centres["agr-mqtt"].wait_for(1)
    refused = world.order({40: -10_000}, message_id=message_id)
    assert await world.dso.send(refused) == (200, "")
    forwarded = await world.agr.wait_for(is_kind(FlexOrder))
    assert forwarded.envelope.message_id == message_id
    assert grid.accepted_power(CP, tomorrow(), 40) == -40_000
    assert await _held_by_recipient(world, message_id) == {MQTT_AGR: -30_000, AGR: -10_000}

    no = FlexOrderResponse(
        envelope=world.envelope(AGR, DSO, Role.AGR),
        reference_message_id=message_id,
        result=Result.REJECTED,
        rejection_reason="unavailable",
    )
    assert await world.agr.send(no) == (200, "")
    told = await world.dso.wait_for(
        lambda m: isinstance(m, FlexOrderResponse) and m.result is Result.REJECTED
    )
    assert isinstance(told, FlexOrderResponse) and told.reference_message_id == message_id
    await world.settle()
    assert grid.accepted_power(CP, tomorrow(), 40) == -30_000
    assert await _held_by_recipient(world, message_id) == {MQTT_AGR: -30_000, AGR: 0}
    assert await booked_power(world.gateway, message_id) == -30_000

    await _restart(world)
    grid = world.gateway.grid_check
    assert grid.accepted_power(CP, tomorrow(), 40) == -30_000
    # what stands is agr-mqtt's order: agr-web's is given back already
    assert grid.cancel(message_id, origin="dso", recipient=AGR) == []
    assert grid.accepted_power(CP, tomorrow(), 40) == -30_000
