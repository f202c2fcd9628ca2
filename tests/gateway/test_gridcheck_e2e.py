"""End to end through the power-flow grid check: an ISO activation (IEC CIM) and a DSO order
(UFTP) that together would overload a line of the CIGRE MV grid. Whichever comes second is
refused (a signed UFTP order cannot be changed) or curtailed (an order gridgate writes for a
CIM activation can), with the line named to its sender and in the audit. Real gridgate,
real peers, the real broker, both databases."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandapower
import pandapower.networks
import pytest
from sqlalchemy import select

from adapters.cim.documents import (
    AcknowledgementDocument,
    ActivationDocument,
    BidAvailabilityDocument,
)
from adapters.cim.emit import emit
from adapters.cim.parse import parse
from gateway.gridcheck.powerflow import PowerFlowCheck
from gateway.model import (
    DPrognosis,
    Envelope,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    PowerIsp,
    Result,
    Role,
    period_bounds,
)
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry
from tests.gateway.test_cim_activation import (
    AGR,
    CP,
    LDC,
    World,
    accept,
    activation_of,
    is_order,
    need,
    next_quarter,
    offer_on,
    open_world,
    post,
    replace_envelope,
)

ZONE = "Europe/Amsterdam"
NODE = "Bus 5"  # the resource sits at the far end of feeder 1


@pytest.fixture
async def grid_world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    """The CIM world with the power-flow check on pandapower's CIGRE MV grid at half load."""
    net = pandapower.networks.create_cigre_network_mv(with_der="all")
    pandapower.to_json(net, str(tmp_path / "cigre-mv.json"))
    gridcheck = {
        "method": "powerflow",
        "zones": [
            {
                "id": "mv",
                "dso": "ldc",
                "model": "cigre-mv.json",
                "format": "pandapower",
                "load_profile": [0.5],
                "v_min": 0.90,
                "v_max": 1.10,
            }
        ],
    }
    async with open_world(tmp_path, database_url, gridcheck=gridcheck, grid_node=NODE) as world:
        yield world


def isp_of(start: datetime) -> tuple[Any, int]:
    """The local day and the 1-based ISP index of `start`."""
    local = start.astimezone(ZoneInfo(ZONE))
    day = local.date()
    first, _ = period_bounds(day, ZONE)
    return day, (start - first) // timedelta(minutes=15) + 1


def dso_order(start: datetime, watts: int) -> FlexOrder:
    day, isp = isp_of(start)
    return FlexOrder(
        envelope=Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
            sender_domain=LDC,
            recipient_domain=AGR,
            sender_role=Role.DSO,
            timestamp=datetime.now(UTC),
        ),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=day,
        congestion_point=CP,
        isps=(PowerIsp(isp, watts),),
        price=Decimal("30.00"),
        currency="EUR",
        order_reference="dso-congestion-1",
        unsolicited=True,
    )


async def audited_check(world: World, event: str) -> dict[str, Any]:
    """The grid check's decision in the newest audit entry of `event` that has one."""
    async with sessionmaker(world.gateway.engine)() as session:
        rows = await session.scalars(
            select(AuditEntry.detail)
            .where(AuditEntry.event == event)
            .order_by(AuditEntry.seq.desc())
        )
        for detail in rows:
            check = json.loads(detail).get("check")
            if check is not None:
                return dict(check)
    raise AssertionError(f"no {event} entry with a grid check")


async def test_a_dso_order_after_an_iso_activation_that_would_overload_a_line_is_refused(
    grid_world: World,
) -> None:
    world = grid_world
    start = next_quarter()
    # the ISO activates 2 MW downward (more consumption) at the resource: the grid takes it
    _, _, body = activation_of(start, timedelta(minutes=15), ["2"], direction="A02")
    status, answer = await post(world, body)
    ack = parse(answer)
    assert status == 200 and isinstance(ack, AcknowledgementDocument)
    assert [r.code for r in ack.reasons] == ["A01"]
    first = await world.agr.wait_for(is_order)
    assert isinstance(first, FlexOrder) and first.power_by_isp() == {isp_of(start)[1]: 2_000_000}

    # the DSO orders 2 MW more in the same ISP: together they would overload the feeder
    assert await world.dso.send(dso_order(start, 2_000_000)) == (200, "")
    answer_to_dso = await world.dso.wait_for(lambda m: isinstance(m, FlexOrderResponse))
    assert isinstance(answer_to_dso, FlexOrderResponse)
    assert answer_to_dso.result is Result.REJECTED
    check = await audited_check(world, "message.rejected")
    binding = check["binding"]
    assert check["outcome"] == "rejected" and check["method"].startswith("powerflow-ac")
    assert binding["type"] == "line" and binding["metric"] == "loading"
    assert binding["predicted"] > binding["limit"]
    assert binding["element"] in (answer_to_dso.rejection_reason or "")
    assert check["model_version"] and check["base_state_time"]
    await asyncio.sleep(0.3)
    assert [m for m in world.agr.received if isinstance(m, FlexOrder)] == [first]


async def test_an_iso_activation_after_a_dso_order_is_curtailed_to_what_the_line_takes(
    grid_world: World,
) -> None:
    world = grid_world
    start = next_quarter()
    assert await world.dso.send(dso_order(start, 2_000_000)) == (200, "")
    first = await world.agr.wait_for(is_order)
    assert isinstance(first, FlexOrder)

    mrid, series, body = activation_of(start, timedelta(minutes=15), ["2"], direction="A02")
    status, answer = await post(world, body)
    ack = parse(answer)
    assert status == 200 and isinstance(ack, AcknowledgementDocument)
    accepted, curtailed = ack.reasons
    assert accepted.code == "A01" and curtailed.code == "B46"
    assert (
        curtailed.text is not None and series in curtailed.text and "curtailed to" in curtailed.text
    )

    # the aggregator gets what the grid takes, not the 2 MW asked
    second = await world.agr.wait_for(lambda m: is_order(m) and m is not first)
    assert isinstance(second, FlexOrder)
    (sent,) = second.power_by_isp().values()
    assert 0 < sent < 2_000_000
    check = await audited_check_document(world)
    (outcome,) = check["outcomes"]
    assert 0 < outcome["fraction"] < 1 and outcome["order"] == second.envelope.message_id
    # the feeder's second section binds: named to the ISO and in the audit, with the check's
    # whole answer
    assert "line Line 2-3" in outcome["reason"] and "line Line 2-3" in curtailed.text
    assert outcome["check"]["outcome"] == "curtailed"
    assert outcome["check"]["binding"]["element"] == "Line 2-3"
    assert outcome["check"]["model_version"] and outcome["check"]["base_state_time"]

    reply = accept(second)
    assert await world.agr.send(reply) == (200, "")
    await asyncio.wait_for(world.iso.arrived.wait(), 10)
    a41 = parse(world.iso.received[0])
    assert isinstance(a41, ActivationDocument) and a41.order_mrid == mrid
    (answered,) = a41.time_series
    assert answered.status == "A07"
    (point,) = answered.periods[0].points
    assert point.quantity == (Decimal(sent) / 1_000_000).quantize(
        Decimal("0.001"), rounding=ROUND_DOWN
    )
    assert answered.reasons[0].code == "B46"


async def audited_check_document(world: World) -> dict[str, Any]:
    async with sessionmaker(world.gateway.engine)() as session:
        detail = await session.scalar(
            select(AuditEntry.detail)
            .where(AuditEntry.event == "document.accepted")
            .order_by(AuditEntry.seq.desc())
        )
    assert detail is not None
    return dict(json.loads(detail))


@pytest.mark.parametrize("control_centre", [False, True])
async def test_a_dso_order_its_aggregator_rejects_gives_its_power_back_unless_setpoints_went_out(
    grid_world: World, control_centre: bool
) -> None:
    world = grid_world
    if not control_centre:  # the aggregator is reached over UFTP only: no setpoints
        directory = world.gateway.pipeline.directory
        uftp_only = replace(directory.participants["agr"], mqtt_prefix=None)
        directory.participants["agr"] = directory.by_domain[AGR] = uftp_only
    start = next_quarter()
    first = dso_order(start, 2_000_000)
    assert await world.dso.send(first) == (200, "")
    forwarded = await world.agr.wait_for(is_order)
    assert isinstance(forwarded, FlexOrder)
    no = FlexOrderResponse(
        envelope=replace_envelope(forwarded),
        reference_message_id=forwarded.envelope.message_id,
        result=Result.REJECTED,
        rejection_reason="battery under maintenance",
    )
    assert await world.agr.send(no) == (200, "")
    assert await world.dso.wait_for(lambda m: isinstance(m, FlexOrderResponse))
    # a second answer to the same order is refused: the first decided the ledger
    yes = replace(no, envelope=replace_envelope(forwarded), result=Result.ACCEPTED)
    status, text = await world.agr.send(yes)
    assert status == 400 and "answered by" in text
    # without setpoints the 2 MW were never carried out: 2 MW more fits where 4 MW would not;
    # with setpoints the control centre may still act on them, so they stay booked
    second = dso_order(start, 2_000_000)
    assert await world.dso.send(second) == (200, "")
    if control_centre:
        refusal = await world.dso.wait_for(
            lambda m: (
                isinstance(m, FlexOrderResponse)
                and m.reference_message_id == second.envelope.message_id
            )
        )
        assert isinstance(refusal, FlexOrderResponse) and refusal.result is Result.REJECTED
        assert "line Line 2-3" in (refusal.rejection_reason or "")
    else:
        await world.agr.wait_for(
            lambda m: is_order(m) and m.envelope.message_id == second.envelope.message_id
        )
        answers = [m for m in world.dso.received if isinstance(m, FlexOrderResponse)]
        assert [a.result for a in answers] == [Result.REJECTED]  # only the aggregator's "no"


async def test_a_bid_the_feeder_cannot_take_whole_is_marked_with_what_it_can_take(
    grid_world: World,
) -> None:
    """Grid prequalification under the power flow: the B45's operational limit is the
    share of the bid the AC check lets through, in MW, and its reason names the line."""
    world = grid_world
    need_doc, _ = need("5")
    downward = replace(
        need_doc,
        bid_time_series=tuple(replace(s, direction="A02") for s in need_doc.bid_time_series),
    )
    assert (await post(world, emit(downward)))[0] == 200
    request = await world.agr.wait_for(lambda m: isinstance(m, FlexRequest))
    assert isinstance(request, FlexRequest)
    assert await world.agr.send(offer_on(request, "20.00", 5_000_000)) == (200, "")
    for _ in range(100):
        if len(world.iso.received) >= 2:
            break
        await asyncio.sleep(0.05)
    (availability,) = [
        d for d in map(parse, world.iso.received) if isinstance(d, BidAvailabilityDocument)
    ]
    (marked,) = availability.bid_time_series
    assert marked.operational_limit is not None
    assert Decimal("0.5") < marked.operational_limit < Decimal("5")
    (reason,) = marked.reasons
    assert reason.code == "B46" and reason.text is not None and "line Line 2-3" in reason.text


async def test_the_aggregators_d_prognoses_are_the_base_state_again_after_a_restart(
    grid_world: World,
) -> None:
    world = grid_world
    start = next_quarter()
    day, isp = isp_of(start)
    made = datetime.now(UTC).replace(microsecond=0)
    prognosis = DPrognosis(
        envelope=Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
            sender_domain=AGR,
            recipient_domain=LDC,
            sender_role=Role.AGR,
            timestamp=made,
        ),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=day,
        congestion_point=CP,
        revision=1,
        isps=(PowerIsp(isp, 3_000_000),),
    )
    assert await world.agr.send(prognosis) == (200, "")
    await world.dso.wait_for(lambda m: isinstance(m, DPrognosis))
    gateway = world.gateway
    decided = gateway.grid_check.check(dso_order(start, 1_000_000), origin="ldc")
    assert decided.base_state_time == made  # the check runs on the prognosis
    assert "line Line 2-3" in decided.reason  # 3 MW more on the feeder: 1 MW is too much
    if decided.reservation:
        gateway.grid_check.release(decided.reservation)

    # a restarted gridgate: a fresh check, filled from the database as at start-up
    fresh = PowerFlowCheck.from_settings(gateway.settings, gateway.pipeline.directory)
    await fresh.load(gateway.engine)
    gateway.pipeline.grid_check = fresh
    await gateway.pipeline.load()
    again = fresh.check(dso_order(start, 1_000_000), origin="ldc")
    assert again.base_state_time == made and again.outcome == decided.outcome
