"""UFTP 3 validation rules across messages: each rule broken once, its rejection asserted.

The world (gridgate, simulated DSOs and aggregator over real HTTP, the real Mosquitto, both
databases) is the one of test_pipeline.py.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from adapters.uftp.peer import UftpPeer
from adapters.uftp.rejections import UftpReason
from gateway.cro import CommonReference
from gateway.model import (
    AGRPortfolioQuery,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    ContractSettlement,
    ContractSettlementIsp,
    ContractSettlementPeriod,
    Disposition,
    DPrognosis,
    DPrognosisResponse,
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    FlexOffer,
    FlexOfferRevocation,
    FlexOrder,
    FlexOrderSettlement,
    FlexOrderSettlementStatus,
    FlexOrderStatus,
    FlexRequest,
    FlexRequestResponse,
    FlexResponse,
    FlexSettlement,
    FlexSettlementResponse,
    Message,
    Metering,
    MeteringIsp,
    MeteringProfile,
    OfferOption,
    PortfolioCongestionPoint,
    PortfolioConnection,
    PowerIsp,
    QueriedConnection,
    RedispatchBy,
    RequestIsp,
    Result,
    Role,
    SettlementIsp,
    TestMessage,
    TestMessageResponse,
)
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, LedgerEntry
from tests.gateway.world import CP, OTHER_CP, ZONE, World, is_kind, tomorrow

DSO = "dso.example.com"
AGR = "agr-web.example.com"


def request(w: World, *, revision: int = 1, expires_in: float = 3600, **kw: Any) -> FlexRequest:
    return FlexRequest(
        envelope=w.envelope(DSO, AGR, Role.DSO, **kw),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=kw.get("period", tomorrow()),
        congestion_point=CP,
        revision=revision,
        expiration=datetime.now(UTC) + timedelta(seconds=expires_in),
        isps=(RequestIsp(5, -2000, 0), RequestIsp(6, -2000, 0)),
    )


def offer(
    w: World,
    *,
    options: tuple[OfferOption, ...] | None = None,
    expires_in: float = 3600,
    **kw: Any,
) -> FlexOffer:
    return FlexOffer(
        envelope=w.envelope(AGR, DSO, Role.AGR, **kw),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=kw.get("period", tomorrow()),
        congestion_point=CP,
        expiration=datetime.now(UTC) + timedelta(seconds=expires_in),
        currency="EUR",
        flex_request_message_id=kw.get("request_id"),
        unsolicited=kw.get("unsolicited", True if kw.get("request_id") is None else None),
        options=options
        or (
            OfferOption(
                "A",
                Decimal("12.50"),
                (PowerIsp(5, -2000), PowerIsp(6, -1000)),
                min_activation_factor=Decimal("0.50"),
            ),
        ),
    )


def order_for(w: World, made: FlexOffer, **change: Any) -> FlexOrder:
    option = made.options[0]
    fields: dict[str, Any] = {
        "envelope": w.envelope(DSO, AGR, Role.DSO),
        "isp_duration": made.isp_duration,
        "time_zone": made.time_zone,
        "period": made.period,
        "congestion_point": made.congestion_point,
        "isps": option.isps,
        "price": option.price,
        "currency": made.currency,
        "order_reference": f"ORD-{uuid.uuid4().hex[:6]}",
        "flex_offer_message_id": made.envelope.message_id,
        "option_reference": option.reference,
    }
    return FlexOrder(**(fields | change))


async def answer_to(peer: UftpPeer, message: Message) -> FlexResponse:
    """gridgate's (or the recipient's) response to `message`, as `peer` receives it."""
    response = await peer.wait_for(
        lambda m: (
            isinstance(m, FlexResponse) and m.reference_message_id == message.envelope.message_id
        )
    )
    assert isinstance(response, FlexResponse)
    return response


async def rejected(peer: UftpPeer, message: Message) -> str:
    """Send `message` from `peer`; expect gridgate's signed rejection and return its reason."""
    assert await peer.send(message) == (200, "")
    response = await answer_to(peer, message)
    assert response.result is Result.REJECTED, response
    assert response.envelope.sender_domain == "gridgate.example.com"
    return response.rejection_reason or ""


async def offered(w: World, made: FlexOffer) -> FlexOffer:
    """Send an offer through gridgate and see it arrive at the DSO."""
    assert await w.agr.send(made) == (200, "")
    await w.dso.wait_for(
        lambda m: isinstance(m, FlexOffer) and m.envelope.message_id == made.envelope.message_id
    )
    return made


async def test_an_order_for_its_offer_is_forwarded_and_a_second_one_is_refused(
    world: World,
) -> None:
    made = await offered(world, offer(world))
    first = order_for(world, made)
    assert await world.dso.send(first) == (200, "")
    await world.agr.wait_for(
        lambda m: isinstance(m, FlexOrder) and m.envelope.message_id == first.envelope.message_id
    )
    second = order_for(world, made)
    reason = await rejected(world.dso, second)
    assert reason.startswith(UftpReason.REFERENCE_ORDERED.value)
    assert made.envelope.message_id in reason


async def test_an_order_for_an_unknown_offer_is_an_unknown_reference(world: World) -> None:
    made = offer(world)  # never sent
    reason = await rejected(world.dso, order_for(world, made))
    assert reason.startswith(f"{UftpReason.UNKNOWN_REFERENCE.value}: Unknown FlexOfferMessageID")


async def test_an_order_from_another_conversation_is_an_unknown_reference(world: World) -> None:
    made = await offered(world, offer(world))
    world.conversation = str(uuid.uuid4())
    reason = await rejected(world.dso, order_for(world, made))
    assert reason.startswith(UftpReason.UNKNOWN_REFERENCE.value)
    assert "belongs to conversation" in reason


async def test_an_order_must_name_its_offer_unless_unsolicited(world: World) -> None:
    made = await offered(world, offer(world))
    reason = await rejected(world.dso, order_for(world, made, flex_offer_message_id=None))
    assert reason.startswith(UftpReason.MISSING_REFERENCE.value)
    assert "Unsolicited=true" in reason


async def test_an_order_whose_isps_differ_from_the_offer_is_refused(world: World) -> None:
    made = await offered(world, offer(world))
    changed = order_for(world, made, isps=(PowerIsp(5, -2000), PowerIsp(6, -1500)))
    reason = await rejected(world.dso, changed)
    assert reason.startswith(UftpReason.ORDER_OFFER_MISMATCH.value)
    assert "ISP 6 is ordered at -1500 W, offered at -1000 W" in reason
    missing = order_for(world, made, isps=(PowerIsp(5, -2000),))
    assert "ISP 6 is ordered at nothing" in await rejected(world.dso, missing)


async def test_an_order_at_another_price_is_refused(world: World) -> None:
    made = await offered(world, offer(world))
    reason = await rejected(world.dso, order_for(world, made, price=Decimal("9.99")))
    assert reason.startswith(UftpReason.ORDER_OFFER_MISMATCH.value)
    assert "Price 9.99 EUR" in reason


async def test_an_activation_factor_below_the_minimum_is_refused(world: World) -> None:
    made = await offered(world, offer(world))
    low = order_for(world, made, activation_factor=Decimal("0.40"))
    reason = await rejected(world.dso, low)
    assert reason.startswith(UftpReason.ACTIVATION_FACTOR_TOO_LOW.value)
    assert "0.40" in reason and "0.50" in reason
    ok = order_for(world, made, activation_factor=Decimal("0.50"))
    assert await world.dso.send(ok) == (200, "")
    await world.agr.wait_for(
        lambda m: isinstance(m, FlexOrder) and m.envelope.message_id == ok.envelope.message_id
    )
    # half the offered power is activated: the grid check books half of it
    async with sessionmaker(world.gateway.engine)() as session:
        booked = (
            await session.execute(
                select(LedgerEntry.isp, LedgerEntry.power).where(
                    LedgerEntry.order_message_id == ok.envelope.message_id
                )
            )
        ).all()
    assert sorted(booked) == [(5, -1000), (6, -500)]


async def test_an_order_must_name_one_of_several_options(world: World) -> None:
    options = (
        OfferOption("A", Decimal("10"), (PowerIsp(5, -2000),)),
        OfferOption("B", Decimal("20"), (PowerIsp(5, -4000),)),
    )
    made = await offered(world, offer(world, options=options))
    unnamed = order_for(world, made, option_reference=None)
    assert (await rejected(world.dso, unnamed)).startswith(UftpReason.MISSING_REFERENCE.value)
    unknown = order_for(world, made, option_reference="C")
    reason = await rejected(world.dso, unknown)
    assert reason.startswith(UftpReason.UNKNOWN_REFERENCE.value)
    assert "Unknown OptionReference 'C'" in reason
    # option B, with B's ISPs and price, is what the DSO may buy
    b = order_for(world, made, option_reference="B", isps=options[1].isps, price=options[1].price)
    assert await world.dso.send(b) == (200, "")
    await world.agr.wait_for(
        lambda m: isinstance(m, FlexOrder) and m.envelope.message_id == b.envelope.message_id
    )


async def test_an_order_for_another_period_is_a_period_mismatch(world: World) -> None:
    made = await offered(world, offer(world))
    later = order_for(world, made, period=made.period + timedelta(days=1))
    reason = await rejected(world.dso, later)
    assert reason.startswith(UftpReason.REFERENCE_PERIOD_MISMATCH.value)


async def test_an_order_for_an_expired_offer_is_refused(world: World) -> None:
    made = await offered(world, offer(world, expires_in=1.0))
    await asyncio.sleep(1.2)
    reason = await rejected(world.dso, order_for(world, made))
    assert reason.startswith(UftpReason.REFERENCE_EXPIRED.value)


async def test_an_order_read_back_from_the_audit_log_after_a_restart_of_the_cache(
    world: World,
) -> None:
    """The offer's content comes from the audit log when the cache no longer has it."""
    made = await offered(world, offer(world))
    world.gateway.pipeline.references._recent.clear()
    bad = order_for(world, made, isps=(PowerIsp(5, -1), PowerIsp(6, -1000)))
    assert "ISP 5 is ordered at -1 W" in await rejected(world.dso, bad)
    good = order_for(world, made)
    assert await world.dso.send(good) == (200, "")
    await world.agr.wait_for(
        lambda m: isinstance(m, FlexOrder) and m.envelope.message_id == good.envelope.message_id
    )


async def test_an_offer_must_answer_a_live_request_of_its_conversation(world: World) -> None:
    unknown = offer(world, request_id=str(uuid.uuid4()), unsolicited=False)
    reason = await rejected(world.agr, unknown)
    assert reason.startswith(f"{UftpReason.UNKNOWN_REFERENCE.value}: Unknown FlexRequestMessageID")
    solicited_without = offer(world, unsolicited=False)
    assert (await rejected(world.agr, solicited_without)).startswith(
        UftpReason.MISSING_REFERENCE.value
    )
    asked = request(world, expires_in=1.0)
    assert await world.dso.send(asked) == (200, "")
    await world.agr.wait_for(is_kind(FlexRequest))
    await asyncio.sleep(1.2)
    late = offer(world, request_id=asked.envelope.message_id)
    assert (await rejected(world.agr, late)).startswith(UftpReason.REFERENCE_EXPIRED.value)


async def test_a_request_revision_must_be_higher_than_the_last(world: World) -> None:
    first = request(world, revision=2)
    assert await world.dso.send(first) == (200, "")
    await world.agr.wait_for(is_kind(FlexRequest))
    for stale in (2, 1):
        reason = await rejected(world.dso, request(world, revision=stale))
        assert reason.startswith(UftpReason.OUTDATED_REVISION.value)
        assert f"Revision {stale}" in reason and "Revision 2, which was already accepted" in reason
    # another Period is another sequence; a higher revision goes through
    assert await world.dso.send(request(world, revision=1, period=tomorrow() + timedelta(1))) == (
        200,
        "",
    )
    newer = request(world, revision=3)
    assert await world.dso.send(newer) == (200, "")
    await world.agr.wait_for(
        lambda m: isinstance(m, FlexRequest) and m.envelope.message_id == newer.envelope.message_id
    )


async def test_several_options_need_a_congestion_point_that_supports_them(
    world: World,
) -> None:
    directory = world.gateway.directory
    cp = directory.congestion_points[CP]
    directory.congestion_points[CP] = cp.model_copy(update={"mutex_offers_supported": False})
    options = (
        OfferOption("A", Decimal("10"), (PowerIsp(5, -2000),)),
        OfferOption("B", Decimal("20"), (PowerIsp(5, -4000),)),
    )
    reason = await rejected(world.agr, offer(world, options=options))
    assert reason.startswith(UftpReason.MUTEX_OFFERS_NOT_SUPPORTED.value)
    # one option is always fine
    await offered(world, offer(world))


async def test_a_message_that_expires_undelivered_is_reported_to_its_sender(
    world: World,
) -> None:
    await world.agr.stop()  # the aggregator is down from here on
    asked = request(world, expires_in=1.5)
    assert await world.dso.send(asked) == (200, "")
    response = await answer_to(world.dso, asked)
    assert isinstance(response, FlexRequestResponse)
    assert response.result is Result.REJECTED
    reason = response.rejection_reason or ""
    assert reason.startswith(UftpReason.UNDELIVERABLE.value)
    assert "agr-web could not be reached before the message expired" in reason
    async with sessionmaker(world.gateway.engine)() as session:
        entries = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.event == "message.undelivered")
            )
        ).all()
    assert [e.message_id for e in entries] == [asked.envelope.message_id]


async def test_a_peer_that_was_down_gets_its_messages_in_order_when_it_returns(
    world: World,
) -> None:
    await world.agr.stop()
    sent = [request(world, revision=r) for r in (1, 2, 3)]
    for message in sent:
        assert await world.dso.send(message) == (200, "")
    await asyncio.sleep(1.0)  # a few failed attempts each
    assert world.agr.received == []
    await world.agr.start()  # back, on the same address
    await world.agr.wait_for(
        lambda m: (
            isinstance(m, FlexRequest) and m.envelope.message_id == sent[-1].envelope.message_id
        )
    )
    await world.settle()
    got = [m.envelope.message_id for m in world.agr.received if isinstance(m, FlexRequest)]
    assert got == [m.envelope.message_id for m in sent]


# -- every other message type ---------------------------------------------------------------

GRIDGATE = "gridgate.example.com"
HOUSE = "ean.871685900000000101"
SHOP = "ean.871685900000000102"


def revocation(w: World, made: FlexOffer, sender: str = AGR) -> FlexOfferRevocation:
    return FlexOfferRevocation(
        envelope=w.envelope(sender, DSO, Role.AGR),
        flex_offer_message_id=made.envelope.message_id,
    )


def prognosis(w: World, revision: int) -> DPrognosis:
    return DPrognosis(
        envelope=w.envelope(AGR, DSO, Role.AGR),
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=tomorrow(),
        congestion_point=CP,
        revision=revision,
        isps=(PowerIsp(1, 5000, duration=96),),
    )


def metering(w: World, revision: int, start: int = 1) -> Metering:
    yesterday = tomorrow() - timedelta(days=2)
    return Metering(
        envelope=w.envelope(AGR, DSO, Role.AGR),
        revision=revision,
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=yesterday,
        ean="E8716859000126365",
        profiles=(MeteringProfile("Power", "kW", (MeteringIsp(start, Decimal("1.5")),)),),
    )


async def arrived(peer: UftpPeer, message: Message) -> Message:
    return await peer.wait_for(lambda m: m.envelope.message_id == message.envelope.message_id)


async def test_an_offer_is_revoked_by_its_aggregator_and_can_no_longer_be_ordered(
    world: World,
) -> None:
    made = await offered(world, offer(world))
    withdrawn = revocation(world, made)
    assert await world.agr.send(withdrawn) == (200, "")
    await arrived(world.dso, withdrawn)
    reason = await rejected(world.dso, order_for(world, made))
    assert reason.startswith(UftpReason.REFERENCE_REVOKED.value)
    again = revocation(world, made)
    assert (await rejected(world.agr, again)).startswith(UftpReason.REFERENCE_REVOKED.value)


async def test_an_ordered_offer_cannot_be_revoked(world: World) -> None:
    made = await offered(world, offer(world))
    bought = order_for(world, made)
    assert await world.dso.send(bought) == (200, "")
    await arrived(world.agr, bought)
    reason = await rejected(world.agr, revocation(world, made))
    assert reason.startswith(UftpReason.REFERENCE_ORDERED.value)
    assert "an ordered offer cannot be revoked" in reason


async def test_only_the_aggregator_that_made_an_offer_revokes_it(world: World) -> None:
    made = await offered(world, offer(world))
    other = UftpPeer("agr-mqtt.example.com", Role.AGR, world.agr_mqtt_key, {})
    await other.start()
    try:
        other.gateway_url = world.url
        # agr-mqtt has no UFTP endpoint: gridgate refuses at once, with the rule
        status, text = await other.send(revocation(world, made, sender="agr-mqtt.example.com"))
    finally:
        await other.stop()
    assert status == 400
    assert text.startswith(UftpReason.INVALID_SENDER_COMBINATION.value)
    assert "only the aggregator that made an offer may revoke it" in text


async def test_a_d_prognosis_is_forwarded_and_its_revision_only_goes_up(world: World) -> None:
    first = prognosis(world, 1)
    assert await world.agr.send(first) == (200, "")
    got = await arrived(world.dso, first)
    assert isinstance(got, DPrognosis) and got.isps == first.isps
    reason = await rejected(world.agr, prognosis(world, 1))
    assert reason.startswith(UftpReason.OUTDATED_REVISION.value)
    # the DSO's answer, with the status of an order, goes back to the aggregator
    answer = DPrognosisResponse(
        envelope=world.envelope(DSO, AGR, Role.DSO),
        reference_message_id=first.envelope.message_id,
        result=Result.ACCEPTED,
        flex_order_statuses=(FlexOrderStatus(str(uuid.uuid4()), True),),
    )
    assert await world.dso.send(answer) == (200, "")
    back = await arrived(world.agr, answer)
    assert isinstance(back, DPrognosisResponse)
    assert back.flex_order_statuses == answer.flex_order_statuses


async def test_metering_of_a_past_day_is_forwarded_and_held_to_its_period(
    world: World,
) -> None:
    sent = metering(world, 1)
    assert await world.agr.send(sent) == (200, "")
    assert isinstance(await arrived(world.dso, sent), Metering)
    reason = await rejected(world.agr, metering(world, 2, start=101))
    assert reason.startswith(UftpReason.ISP_OUT_OF_BOUNDS.value)
    assert (await rejected(world.agr, metering(world, 1))).startswith(
        UftpReason.OUTDATED_REVISION.value
    )


async def test_a_settlement_names_only_the_dsos_congestion_points(world: World) -> None:
    def settlement(cp: str) -> FlexSettlement:
        return FlexSettlement(
            envelope=world.envelope(DSO, AGR, Role.DSO),
            period_start=tomorrow() - timedelta(days=30),
            period_end=tomorrow() - timedelta(days=1),
            currency="EUR",
            order_settlements=(
                FlexOrderSettlement(
                    order_reference="ORD-7",
                    period=tomorrow() - timedelta(days=3),
                    congestion_point=cp,
                    price=Decimal("12.50"),
                    net_settlement=Decimal("12.50"),
                    isps=(SettlementIsp(5, 1000, -500, 600, -400),),
                ),
            ),
            contract_settlements=(
                ContractSettlement(
                    "C-1",
                    (
                        ContractSettlementPeriod(
                            tomorrow() - timedelta(days=3), (ContractSettlementIsp(5, 1000),)
                        ),
                    ),
                ),
            ),
        )

    foreign = settlement(OTHER_CP)
    reason = await rejected(world.dso, foreign)
    assert reason.startswith(UftpReason.INVALID_CONGESTION_POINT.value)
    good = settlement(CP)
    assert await world.dso.send(good) == (200, "")
    assert isinstance(await arrived(world.agr, good), FlexSettlement)
    disputed = FlexSettlementResponse(
        envelope=world.envelope(AGR, DSO, Role.AGR),
        reference_message_id=good.envelope.message_id,
        result=Result.ACCEPTED,
        statuses=(FlexOrderSettlementStatus("ORD-7", Disposition.DISPUTED, "metered less"),),
    )
    assert await world.agr.send(disputed) == (200, "")
    back = await arrived(world.dso, disputed)
    assert isinstance(back, FlexSettlementResponse) and back.statuses == disputed.statuses


async def test_a_test_message_to_gridgate_is_answered_and_one_to_a_peer_forwarded(
    world: World,
) -> None:
    ping = TestMessage(envelope=world.envelope(DSO, GRIDGATE, Role.DSO))
    assert await world.dso.send(ping) == (200, "")
    pong = await world.dso.wait_for(is_kind(TestMessageResponse))
    assert pong.envelope.sender_domain == GRIDGATE
    assert pong.envelope.conversation_id == ping.envelope.conversation_id
    relayed = TestMessage(envelope=world.envelope(DSO, AGR, Role.DSO))
    assert await world.dso.send(relayed) == (200, "")
    assert isinstance(await arrived(world.agr, relayed), TestMessage)


async def test_gridgate_as_cro_keeps_the_register_and_answers_queries(world: World) -> None:
    start = tomorrow() - timedelta(days=1)
    dso_update = DSOPortfolioUpdate(
        envelope=world.envelope(DSO, GRIDGATE, Role.DSO),
        time_zone=ZONE,
        congestion_points=(
            PortfolioCongestionPoint(
                CP,
                start,
                True,
                RedispatchBy.DSO,
                (PortfolioConnection(HOUSE, start), PortfolioConnection(SHOP, start)),
            ),
        ),
    )
    answer = await answer_to_sent(world.dso, dso_update)
    assert answer.result is Result.ACCEPTED and answer.envelope.sender_role is Role.CRO
    agr_update = AGRPortfolioUpdate(
        envelope=world.envelope(AGR, GRIDGATE, Role.AGR),
        time_zone=ZONE,
        connections=(PortfolioConnection(HOUSE, start),),
    )
    assert (await answer_to_sent(world.agr, agr_update)).result is Result.ACCEPTED

    asked = DSOPortfolioQuery(
        envelope=world.envelope(DSO, GRIDGATE, Role.DSO),
        time_zone=ZONE,
        period=tomorrow(),
        entity_address=CP,
    )
    found = await answer_to_sent(world.dso, asked)
    assert isinstance(found, DSOPortfolioQueryResponse) and found.result is Result.ACCEPTED
    assert found.congestion_point == CP
    assert set(found.connections) == {QueriedConnection(HOUSE, AGR), QueriedConnection(SHOP)}

    mine = AGRPortfolioQuery(
        envelope=world.envelope(AGR, GRIDGATE, Role.AGR), time_zone=ZONE, period=tomorrow()
    )
    view = await answer_to_sent(world.agr, mine)
    assert isinstance(view, AGRPortfolioQueryResponse) and view.result is Result.ACCEPTED
    ((dso_domain, (cp_view,)),) = view.views[0].portfolios
    assert dso_domain == DSO and cp_view.entity_address == CP
    assert cp_view.connections == (HOUSE,)

    # the register is rebuilt from the audit log alone
    rebuilt = CommonReference()
    pipeline = world.gateway.pipeline
    await rebuilt.load(pipeline.engine, GRIDGATE, pipeline.codec.reread)
    assert pipeline.cro is not None and rebuilt == pipeline.cro

    # another DSO's congestion point may not be registered, nor asked about
    foreign = replace(
        dso_update,
        envelope=world.envelope(DSO, GRIDGATE, Role.DSO),
        congestion_points=(replace(dso_update.congestion_points[0], entity_address=OTHER_CP),),
    )
    assert (await rejected(world.dso, foreign)).startswith(
        UftpReason.INVALID_CONGESTION_POINT.value
    )
    # a query about nothing registered: the 3.x schema has no rejected AGR answer without a
    # DSO-View, so gridgate refuses it at once, naming the rule
    before = replace(
        mine, envelope=world.envelope(AGR, GRIDGATE, Role.AGR), period=start - timedelta(1)
    )
    status, text = await world.agr.send(before)
    assert status == 400 and text.startswith(UftpReason.INVALID_CONGESTION_POINT.value)


async def answer_to_sent(peer: UftpPeer, message: Message) -> FlexResponse:
    assert await peer.send(message) == (200, "")
    return await answer_to(peer, message)


async def test_a_message_for_a_cro_role_to_a_non_cro_is_refused(world: World) -> None:
    world.gateway.pipeline.cro = None  # gridgate is not configured as the CRO here
    update = AGRPortfolioUpdate(
        envelope=world.envelope(AGR, GRIDGATE, Role.AGR),
        time_zone=ZONE,
        connections=(PortfolioConnection(HOUSE, tomorrow()),),
    )
    reason = await rejected(world.agr, update)
    assert reason.startswith(UftpReason.UNKNOWN_RECIPIENT_DOMAIN.value)
    assert "it is not a CRO" in reason


async def test_a_period_on_a_dst_day_has_92_or_100_isps(world: World) -> None:
    autumn = date(2027, 10, 31)  # clocks go back: 100 ISPs of 15 minutes
    spring = date(2027, 3, 28)  # clocks go forward: 92
    last = replace(request(world, period=autumn), isps=(RequestIsp(100, -1000, 0),))
    assert await world.dso.send(last) == (200, "")
    await arrived(world.agr, last)
    beyond = replace(request(world, period=spring, revision=2), isps=(RequestIsp(93, -1000, 0),))
    reason = await rejected(world.dso, beyond)
    assert reason.startswith(UftpReason.ISP_OUT_OF_BOUNDS.value)
    assert "(92 ISPs)" in reason
