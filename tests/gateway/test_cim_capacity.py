"""A temporary TSO-DSO interface limit by Capacity_MarketDocument, end to end, on both
databases: the LDC posts the capacity of its zone's interface over HTTPS with its client
certificate; gridgate acknowledges it (A01), audits it, and the power-flow check (CIGRE MV)
now refuses an order in that ISP that it accepted before, naming the interface and the
document. An aggregator, another DSO, an unknown area, and a gridgate without the power-flow
check are refused (A02 with A78, A78, A23, A94), and nothing is applied or stored. The limit is
on record: a restarted gridgate applies it again, and a later revision replaces it."""

# ruff: noqa: E501 - the document template keeps one element per line, as ESMP writes it

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandapower
import pandapower.networks
import pytest
from sqlalchemy import select

from adapters.cim.documents import AcknowledgementDocument
from adapters.cim.parse import parse
from gateway.app import Gateway
from gateway.gridcheck.powerflow import PowerFlowCheck
from gateway.model import FlexOrder, FlexOrderResponse, Result
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, TemporaryLimitRecord
from tests.gateway.test_cim_activation import (
    AREA,
    GRIDGATE_EIC,
    ISO_EIC,
    LDC_EIC,
    World,
    is_order,
    next_quarter,
    open_world,
    post,
)
from tests.gateway.test_gridcheck_e2e import NODE, dso_order

NS = "urn:iec62325.351:tc57wg16:451-3:capacitydocument:8:4"
TSO_AREA = "10YNL----------L"
AGR_EIC = "10X1001A1001C77Q"
LDC2_EIC = "10X1001A1001D11K"
QUARTER = timedelta(minutes=15)
# CIGRE MV at half load imports ~21 MW at its slack: 22 MW leaves room for the base state
# (22 MW less the 2 % margin) but not for 2 MW more consumption at Bus 5
CAPACITY_MW = "22"


def capacity_document(
    start: datetime,
    megawatts: list[str],
    *,
    sender: str = LDC_EIC,
    role: str = "A50",
    area: str = AREA,
    mrid: str | None = None,
    revision: int = 1,
) -> tuple[str, bytes]:
    """A capacity document (A26): the interface between `area` and the TSO's, one point per
    quarter hour from `start`, in MW."""
    mrid = mrid or str(uuid.uuid4())
    end = start + QUARTER * len(megawatts)
    points = "".join(
        f"<Point><position>{i}</position><quantity>{q}</quantity></Point>"
        for i, q in enumerate(megawatts, start=1)
    )
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<Capacity_MarketDocument xmlns="{NS}">
  <mRID>{mrid}</mRID>
  <revisionNumber>{revision}</revisionNumber>
  <type>A26</type>
  <process.processType>A49</process.processType>
  <sender_MarketParticipant.mRID codingScheme="A01">{sender}</sender_MarketParticipant.mRID>
  <sender_MarketParticipant.marketRole.type>{role}</sender_MarketParticipant.marketRole.type>
  <receiver_MarketParticipant.mRID codingScheme="A01">{GRIDGATE_EIC}</receiver_MarketParticipant.mRID>
  <receiver_MarketParticipant.marketRole.type>A34</receiver_MarketParticipant.marketRole.type>
  <createdDateTime>{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}</createdDateTime>
  <period.timeInterval><start>{_t(start)}</start><end>{_t(end)}</end></period.timeInterval>
  <domain.mRID codingScheme="A01">{area}</domain.mRID>
  <TimeSeries>
    <mRID>interface-1</mRID>
    <businessType>C12</businessType>
    <product>8716867000016</product>
    <in_Domain.mRID codingScheme="A01">{area}</in_Domain.mRID>
    <out_Domain.mRID codingScheme="A01">{TSO_AREA}</out_Domain.mRID>
    <measurement_Unit.name>MAW</measurement_Unit.name>
    <Period>
      <timeInterval><start>{_t(start)}</start><end>{_t(end)}</end></timeInterval>
      <resolution>PT15M</resolution>
      {points}
    </Period>
  </TimeSeries>
</Capacity_MarketDocument>
"""
    return mrid, xml.encode()


def _t(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


GRIDCHECK = {
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


@pytest.fixture
async def grid_world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    """The CIM world with the power-flow check on pandapower's CIGRE MV grid at half load."""
    net = pandapower.networks.create_cigre_network_mv(with_der="all")
    pandapower.to_json(net, str(tmp_path / "cigre-mv.json"))
    async with open_world(tmp_path, database_url, gridcheck=GRIDCHECK, grid_node=NODE) as world:
        yield world


@pytest.fixture
async def capacity_world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    """The CIM world with the first-cut capacity check (no grid model, no interface)."""
    async with open_world(tmp_path, database_url) as world:
        yield world


async def post_as_ldc(world: World, body: bytes) -> AcknowledgementDocument:
    status, answer = await post(world, body, world.ldc_tls)
    assert status == 200
    ack = parse(answer)
    assert isinstance(ack, AcknowledgementDocument)
    return ack


def codes(ack: AcknowledgementDocument) -> list[str]:
    return [r.code for r in ack.reasons]


def would_accept(world: World, start: datetime, watts: int) -> bool:
    """Whether the check takes a DSO order of `watts` in the ISP at `start`; nothing kept."""
    decision = world.gateway.grid_check.check(dso_order(start, watts), origin="ldc")
    if decision.reservation is not None:
        world.gateway.grid_check.release(decision.reservation)
    return decision.accepted


async def audit(world: World, event: str) -> list[dict[str, Any]]:
    async with sessionmaker(world.gateway.engine)() as session:
        rows = await session.scalars(
            select(AuditEntry.detail).where(AuditEntry.event == event).order_by(AuditEntry.seq)
        )
        return [json.loads(detail) for detail in rows]


def act_as(world: World, fingerprint: str, participant_id: str, role: str | None, eic: str) -> None:
    """Let the LDC's client certificate (`fingerprint`) stand for another participant (`role`
    given: a new one), known in CIM by `eic`: how an aggregator or another DSO would post."""
    directory = world.gateway.pipeline.directory
    ldc = directory.participants["ldc"]
    if role is None:
        who = directory.participants[participant_id]
    else:
        who = dataclasses.replace(ldc, id=participant_id, congestion_points=())
    directory.by_certificate[fingerprint] = who
    directory.by_party[("A01", eic)] = who


async def test_the_ldc_limits_its_interface_and_the_check_applies_it(
    grid_world: World,
) -> None:
    world = grid_world
    start = next_quarter() + QUARTER  # the ISP after the next: a whole ISP ahead
    assert would_accept(world, start, 2_000_000)  # 2 MW more consumption at Bus 5 fits

    mrid, body = capacity_document(start, [CAPACITY_MW])
    ack = await post_as_ldc(world, body)
    assert codes(ack) == ["A01"], ack.reasons
    assert ack.received.mrid == mrid and ack.received.type == "A26"
    assert (ack.sender.mrid.value, ack.receiver.mrid.value) == (GRIDGATE_EIC, LDC_EIC)
    assert ack.reasons[0].text is not None and "zone mv 22 MW" in ack.reasons[0].text
    (entry,) = await audit(world, "document.accepted")
    assert entry["kind"] == "Capacity_MarketDocument" and entry["document"] == f"{mrid}/1"
    (limit,) = entry["temporary_limits"]
    assert (limit["zone"], limit["interface_limit_w"], limit["area"]) == ("mv", 22e6, AREA)
    assert limit["start"] == start.isoformat() and limit["end"] == (start + QUARTER).isoformat()

    # the DSO's UFTP order of 2 MW in that ISP is refused now, naming the interface and why
    assert await world.dso.send(dso_order(start, 2_000_000)) == (200, "")
    answer = await world.dso.wait_for(lambda m: isinstance(m, FlexOrderResponse))
    assert isinstance(answer, FlexOrderResponse) and answer.result is Result.REJECTED
    reason = answer.rejection_reason or ""
    assert "TSO-DSO interface" in reason and "temporary limit 22 MW" in reason, reason
    assert mrid in reason
    # the ISP after it has no temporary limit: the same order goes through
    assert await world.dso.send(dso_order(start + QUARTER, 2_000_000)) == (200, "")
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder) and order.congestion_point

    # the same bytes again: the same answer, nothing set or stored twice
    again = await post_as_ldc(world, body)
    assert again == ack
    assert len(await audit(world, "document.accepted")) == 1

    # revision 2 raises the capacity: it replaces revision 1, and 2 MW fits again
    _, revised = capacity_document(start, ["40"], mrid=mrid, revision=2)
    assert codes(await post_as_ldc(world, revised)) == ["A01"]
    assert would_accept(world, start, 2_000_000)
    entries = await audit(world, "document.accepted")
    assert entries[-1]["replaces"] == [limit["id"]]

    # revision 1 once more, with other content, cannot go back behind revision 2
    _, stale = capacity_document(start, ["5"], mrid=mrid, revision=1)
    refused = await post_as_ldc(world, stale)
    assert codes(refused) == ["A02", "A51"]
    assert would_accept(world, start, 2_000_000)


async def restart(world: World) -> None:
    """Stop gridgate and start a new one on the same config and database."""
    settings = world.gateway.settings
    await world.gateway.stop()
    gateway = Gateway(settings)
    await gateway.start()
    world.gateway = gateway
    world.url = f"https://127.0.0.1:{gateway.port}"
    for peer in (world.agr, world.dso):
        peer.gateway_url = f"{world.url}/shapeshifter/api/v3/message"


async def limit_rows(world: World) -> dict[str, Any]:
    """The `temporary_limits` table by limit id."""
    async with world.gateway.engine.connect() as conn:
        return {row.id: row for row in await conn.execute(select(TemporaryLimitRecord))}


async def test_a_documents_limit_binds_again_after_a_restart_and_its_next_revision_replaces_it(
    grid_world: World,
) -> None:
    world = grid_world
    first_isp = next_quarter() + QUARTER
    second_isp = first_isp + QUARTER
    assert would_accept(world, first_isp, 2_000_000)
    assert would_accept(world, second_isp, 2_000_000)
    mrid, body = capacity_document(first_isp, [CAPACITY_MW])
    assert codes(await post_as_ldc(world, body)) == ["A01"]
    assert not would_accept(world, first_isp, 2_000_000)
    ((first,),) = [e["temporary_limits"] for e in await audit(world, "document.accepted")]
    row = (await limit_rows(world))[first["id"]]
    assert (row.source, row.set_by, row.document_mrid, row.document_revision) == (
        "cim",
        "ldc",
        mrid,
        1,
    )
    assert (row.zone, row.interface_limit_w, row.cleared_at) == ("mv", 22e6, None)
    assert (row.starts_at, row.ends_at) == (first_isp, second_isp)

    await restart(world)
    assert not would_accept(world, first_isp, 2_000_000)  # in force again, under its id
    assert would_accept(world, second_isp, 2_000_000)
    check = world.gateway.grid_check
    assert isinstance(check, PowerFlowCheck) and check.temporary_limit(first["id"]) is not None

    # revision 2 limits the ISP after instead: it replaces revision 1, set before the restart
    _, revised = capacity_document(second_isp, [CAPACITY_MW], mrid=mrid, revision=2)
    assert codes(await post_as_ldc(world, revised)) == ["A01"]
    assert would_accept(world, first_isp, 2_000_000)  # revision 1's limit no longer applies
    assert not would_accept(world, second_isp, 2_000_000)  # revision 2's does
    entry = (await audit(world, "document.accepted"))[-1]
    assert entry["replaces"] == [first["id"]]
    (second,) = entry["temporary_limits"]
    rows = await limit_rows(world)
    assert rows[first["id"]].cleared_at is not None
    assert (rows[second["id"]].document_revision, rows[second["id"]].cleared_at) == (2, None)

    # and after another restart only revision 2's limit is back
    await restart(world)
    check = world.gateway.grid_check
    assert isinstance(check, PowerFlowCheck)
    assert check.temporary_limit(first["id"]) is None
    assert check.temporary_limit(second["id"]) is not None
    assert would_accept(world, first_isp, 2_000_000)
    assert not would_accept(world, second_isp, 2_000_000)


async def test_two_revisions_at_the_same_moment_leave_only_the_later_ones_limits(
    grid_world: World,
) -> None:
    """Revisions 2 and 3 posted together both replace what came before them: revision 1's
    limit and revision 2's are cleared, revision 3's alone binds (in memory and on record)."""
    world = grid_world
    isps = [next_quarter() + QUARTER * k for k in (1, 2, 3)]
    mrid, body = capacity_document(isps[0], [CAPACITY_MW])
    assert codes(await post_as_ldc(world, body)) == ["A01"]
    bodies = [
        capacity_document(isps[r - 1], [CAPACITY_MW], mrid=mrid, revision=r)[1] for r in (2, 3)
    ]
    second, third = await asyncio.gather(*(post_as_ldc(world, b) for b in bodies))
    assert codes(third) == ["A01"]
    # revision 2 goes through first, or is refused for coming after revision 3
    assert codes(second) == ["A01"] or "revision 3 is in force already" in str(second.reasons)
    assert [would_accept(world, start, 2_000_000) for start in isps] == [True, True, False]
    rows = await limit_rows(world)
    in_force = sorted(r.document_revision for r in rows.values() if r.cleared_at is None)
    assert in_force == [3]


async def test_who_may_not_limit_the_interface_is_refused_and_nothing_is_applied(
    grid_world: World,
) -> None:
    world = grid_world
    start = next_quarter() + QUARTER
    cases = [
        # an aggregator (its certificate and party code known to gridgate)
        ("agr", None, AGR_EIC, "A52", AREA, "A78", "agr is a AGR"),
        # another DSO: not the zone's
        ("ldc2", "DSO", LDC2_EIC, "A50", AREA, "A78", "ldc's grid, not ldc2's"),
        # the zone's DSO, for an area no congestion point carries
        ("ldc", None, LDC_EIC, "A50", "10YDE-EON------1", "A23", "neither is the area"),
    ]
    certificates = world.gateway.pipeline.directory.by_certificate
    (fingerprint,) = [f for f, p in certificates.items() if p.id == "ldc"]
    for participant, role, eic, market_role, area, code, text in cases:
        act_as(world, fingerprint, participant, role, eic)
        _, body = capacity_document(start, ["1"], sender=eic, role=market_role, area=area)
        ack = await post_as_ldc(world, body)
        assert codes(ack) == ["A02", code], ack.reasons
        assert text in (ack.reasons[1].text or ""), ack.reasons[1].text
        assert ack.receiver.mrid.value == eic

    # a 1 MW capacity would refuse any more consumption: none of them was applied or stored
    assert would_accept(world, start, 2_000_000)
    assert await audit(world, "document.accepted") == []
    rejected = await audit(world, "document.rejected")
    assert [r["rule"] for r in rejected] == ["A78", "A78", "A23"]
    assert {r["protocol"] for r in rejected} == {"cim"}


async def test_the_iso_does_not_set_a_dso_zones_limit(grid_world: World) -> None:
    """SO GL Art. 182(4): the DSO sets temporary limits (with the TSO); the operator API
    holds the ISO to the same rule."""
    world = grid_world
    start = next_quarter() + QUARTER
    _, body = capacity_document(start, [CAPACITY_MW], sender=ISO_EIC, role="A04")
    status, answer = await post(world, body)  # the ISO's certificate
    ack = parse(answer)
    assert status == 200 and isinstance(ack, AcknowledgementDocument)
    assert codes(ack)[:2] == ["A02", "A78"] and ack.receiver.mrid.value == ISO_EIC
    assert "only a zone's DSO sets" in " ".join(r.text or "" for r in ack.reasons)
    assert would_accept(world, start, 2_000_000)  # nothing applied
    (entry,) = await audit(world, "document.rejected")
    assert entry["rule"] == "A78"


async def test_without_the_power_flow_check_a_capacity_document_is_refused(
    capacity_world: World,
) -> None:
    world = capacity_world
    _, body = capacity_document(next_quarter(), ["22"])
    ack = await post_as_ldc(world, body)
    assert codes(ack) == ["A02", "A94"]
    assert '"powerflow"' in (ack.reasons[1].text or "")
    assert await audit(world, "document.accepted") == []
    (rejected,) = await audit(world, "document.rejected")
    assert rejected["rule"] == "A94"
