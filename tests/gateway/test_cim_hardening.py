"""The CIM path under pressure: another LDC's grid, answers that match no document, mRIDs
two senders share, TimeSeries refused in part, short activations above the limit, the A41
against Statnett's response sample, and the grid check's tokens.

They run in the world of test_cim_activation (an ISO with a client certificate, an LDC that
owns CP with a 400 kW limit, one aggregator with a UFTP endpoint and an MQTT control centre).
"""

# ruff: noqa: F811 - `world` is the imported fixture; XML kept one element a line

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from adapters.cim.documents import (
    AcknowledgementDocument,
    ActivationDocument,
    CodedId,
    ReserveBidDocument,
)
from adapters.cim.documents import Participant as CimParticipant
from adapters.cim.emit import emit
from adapters.cim.parse import parse
from adapters.cim.translate import offer_bid
from gateway.config import PartyCode
from gateway.gridcheck.capacity import CapacityLimitCheck
from gateway.model import (
    FlexOffer,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    OfferOption,
    PowerIsp,
    Result,
    Role,
)
from tests.gateway.test_cim_activation import (  # noqa: F401 - `world` is the fixture
    AGR,
    CP,
    GRIDGATE,
    GRIDGATE_EIC,
    ISO_EIC,
    NS,
    RESOURCE,
    World,
    activation,
    activation_of,
    is_order,
    need,
    next_quarter,
    offer_on,
    post,
    replace_envelope,
    world,
)

ZONE = "Europe/Amsterdam"


async def ack_of(world: World, body: bytes) -> AcknowledgementDocument:
    status, answer = await post(world, body)
    assert status == 200, answer
    ack = parse(answer)
    assert isinstance(ack, AcknowledgementDocument)
    return ack


def orders(world: World) -> list[FlexOrder]:
    return [m for m in world.agr.received if isinstance(m, FlexOrder)]


def answer_to(order: FlexOrder, result: Result, reason: str | None = None) -> FlexOrderResponse:
    return FlexOrderResponse(
        envelope=replace_envelope(order),
        reference_message_id=order.envelope.message_id,
        result=result,
        rejection_reason=reason,
    )


async def iso_documents(world: World, count: int, seconds: float = 3.0) -> list[object]:
    for _ in range(int(seconds / 0.05)):
        if len(world.iso.received) >= count:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # and whatever else comes
    return [parse(raw) for raw in world.iso.received]


def act_as(world: World, participant_id: str, **changes: object) -> None:
    """Make the ISO's certificate (and EIC) name another participant, changed by `changes`."""
    directory = world.gateway.pipeline.directory
    base = directory.participants.get(participant_id) or directory.participants["iso"]
    who = replace(base, id=participant_id, **changes)  # type: ignore[arg-type]
    directory.participants[participant_id] = who
    directory.by_party[("A01", ISO_EIC)] = who
    for fingerprint in list(directory.by_certificate):
        directory.by_certificate[fingerprint] = who


# -- 1. security ------------------------------------------------------------------------------


async def test_an_ldc_cannot_activate_resources_behind_another_ldcs_congestion_point(
    world: World,
) -> None:
    """docs/cim.md: activations may come from an LDC (role DSO) *for its own grid*. CP is
    owned by `ldc`; `ldc-b` owns nothing, yet its activation reaches the aggregator."""
    act_as(world, "ldc-b", role=Role.DSO, cim_endpoint=None)
    _, _, body = activation("0.1")
    ack = await ack_of(world, body)
    await asyncio.sleep(0.5)
    assert [r.code for r in ack.reasons] == ["A02"], (
        "an LDC ordered flexibility in another LDC's grid"
    )
    assert orders(world) == []


async def test_an_unsolicited_flex_offer_to_gridgate_is_answered(world: World) -> None:
    """UFTP: every FlexOffer gets a FlexOfferResponse. `_for_gateway` now lets any FlexOffer
    addressed to gridgate through (check_references returns early for Unsolicited offers,
    and `_relay_answer` finds nothing), so it is stored as accepted and never answered; before
    a6c7191 it was refused (Unknown RecipientDomain). Its congestion point is not even held to
    the aggregator's resources."""
    period = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=1)).date()
    from gateway.model import period_bounds

    offer = FlexOffer(
        envelope=replace_envelope_for_offer(),  # type: ignore[arg-type]
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=period,
        congestion_point="ean.871685900000000999",  # nobody's congestion point
        expiration=period_bounds(period, ZONE)[0],
        currency="EUR",
        unsolicited=True,
        options=(OfferOption("A", Decimal("1.00"), (PowerIsp(1, -1000),)),),
    )
    status = await world.agr.send(offer)
    if status[0] != 200:
        return  # refused at once: fine
    response = await world.agr.wait_for(lambda m: isinstance(m, FlexOfferResponse), timeout=3)
    assert isinstance(response, FlexOfferResponse) and response.result is Result.REJECTED


def replace_envelope_for_offer() -> object:
    from gateway.model import Envelope

    return Envelope(
        message_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        sender_domain=AGR,
        recipient_domain=GRIDGATE,
        sender_role=Role.AGR,
        timestamp=datetime.now(UTC),
        version="3.1.0",
    )


async def test_answers_find_their_own_senders_document_when_mrids_collide(world: World) -> None:
    """ESMP mRIDs are unique per sender only: an LDC's need and an ISO's activation with the
    same mRID each get their own answers (an order's reference names its document's sender)."""
    directory = world.gateway.pipeline.directory
    iso = directory.participants["iso"]
    shared_mrid = str(uuid.uuid4())
    # the LDC posts a need with mRID M …
    act_as(world, "ldc", role=Role.DSO, cim_endpoint=iso.cim_endpoint)
    document, _ = need("0.1")
    ldc_need = replace(
        document, mrid=shared_mrid, sender=CimParticipant(CodedId(ISO_EIC, "A01"), "A50")
    )
    assert [r.code for r in (await ack_of(world, emit(ldc_need))).reasons] == ["A01"]
    # … and the ISO an activation with the same mRID
    directory.participants["iso"] = iso
    directory.by_party[("A01", ISO_EIC)] = iso
    for fingerprint in list(directory.by_certificate):
        directory.by_certificate[fingerprint] = iso
    old_mrid, _, body = activation("0.1")
    body = body.replace(old_mrid.encode(), shared_mrid.encode())
    assert [r.code for r in (await ack_of(world, body)).reasons] == ["A01"]

    request = await world.agr.wait_for(lambda m: isinstance(m, FlexRequest))
    order = await world.agr.wait_for(is_order)
    assert isinstance(request, FlexRequest) and isinstance(order, FlexOrder)
    assert await world.agr.send(answer_to(order, Result.ACCEPTED)) == (200, "")
    offer = offer_on(request, "5", -100_000)
    assert await world.agr.send(offer) == (200, ""), "the offer on the LDC's need was refused"
    documents = await iso_documents(world, 2)
    kinds = sorted(getattr(d, "type", "?") for d in documents)
    assert kinds == ["A37", "A41"], kinds


# -- 2. the answers and the ledger ------------------------------------------------------------


async def test_a_timeseries_refused_in_the_acknowledgement_is_not_partly_carried_out(
    world: World,
) -> None:
    """A TimeSeries across local midnight becomes two FlexOrders. When the grid check refuses
    the second day's, the acknowledgement refuses the TimeSeries (A02, B46), yet the first
    day's FlexOrder is sent, its setpoints queued and its power booked."""
    zone = ZoneInfo(ZONE)
    midnight = datetime.combine(
        datetime.now(zone).date() + timedelta(days=1), time.min, tzinfo=zone
    )
    start = midnight - timedelta(minutes=15)
    _, series, body = activation_of(start, timedelta(minutes=15), ["0.2", "0.5"])
    ack = await ack_of(world, body)
    refused = {s.mrid for s in ack.rejected_time_series}
    assert series in refused  # 500 kW after midnight exceeds the 400 kW limit
    await asyncio.sleep(0.7)
    grid = world.gateway.grid_check
    booked = grid.accepted_power(CP, start.astimezone(zone).date(), 96)  # type: ignore[attr-defined]
    assert orders(world) == [] and booked == 0, (
        f"refused TimeSeries carried out: {len(orders(world))} FlexOrder(s), {booked} W booked"
    )


@pytest.mark.parametrize("control_centre", [False, True])
async def test_an_order_the_aggregator_rejects_gives_its_power_back_unless_setpoints_went_out(
    world: World, control_centre: bool
) -> None:
    """The ISO is told A11 (unavailable). Without setpoints the order's power goes back to
    the grid, so the next activation on the congestion point fits; once setpoints went to
    the control centre, which may still act on them, the power stays booked."""
    if not control_centre:
        directory = world.gateway.pipeline.directory
        uftp_only = replace(directory.participants["agr"], mqtt_prefix=None)
        directory.participants["agr"] = directory.by_domain[AGR] = uftp_only
        directory.by_cim_resource[RESOURCE] = (uftp_only, directory.by_cim_resource[RESOURCE][1])
    _, _, body = activation("0.3")
    await ack_of(world, body)
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder)
    assert await world.agr.send(answer_to(order, Result.REJECTED, "unavailable")) == (200, "")
    await iso_documents(world, 1)
    _, _, again = activation("0.3")
    ack = await ack_of(world, again)
    expected = ["A02"] if control_centre else ["A01"]
    assert [r.code for r in ack.reasons][:1] == expected, [
        r.text for s in ack.rejected_time_series for r in s.reasons
    ]


async def test_an_activation_for_an_aggregator_gridgate_cannot_reach_is_refused(
    world: World,
) -> None:
    """`route` refuses a FlexOrder for an aggregator without a UFTP endpoint (NO_ROUTE) unless
    setpoints reach it. `originate` does not: with neither an endpoint nor an MQTT prefix the
    ISO gets A01, the power is booked, and the order goes nowhere."""
    directory = world.gateway.pipeline.directory
    directory.by_domain[AGR] = replace(directory.by_domain[AGR], endpoint=None, mqtt_prefix=None)
    _, _, body = activation("0.1")
    ack = await ack_of(world, body)
    assert [r.code for r in ack.reasons] == ["A02"]


# -- 3. mapping -------------------------------------------------------------------------------


async def test_a_short_activation_above_the_limit_is_refused(world: World) -> None:
    """The grid check is a power limit, but it sees the ISP *mean*: 600 kW for 5 minutes is
    booked and ordered as 200 kW for 15 minutes, and passes a 400 kW limit."""
    _, _, body = activation("0.6", minutes=5)
    ack = await ack_of(world, body)
    await asyncio.sleep(0.5)
    sent = [p for o in orders(world) for p in o.power_by_isp().values()]
    assert [r.code for r in ack.reasons] == ["A02"], (
        f"accepted; the aggregator was ordered {sent} W"
    )


async def test_the_bid_carries_the_offers_price(world: World) -> None:
    """docs/cim.md: 'the option's Price, Currency → price.amount, currency_Unit.name'.
    `offer_bid` writes no price: the ISO receives a bid without a price."""
    _, body = need("0.1")
    await ack_of(world, body)
    request = await world.agr.wait_for(lambda m: isinstance(m, FlexRequest))
    assert isinstance(request, FlexRequest)
    offer = offer_on(request, "30.00", -100_000)
    assert await world.agr.send(offer) == (200, "")
    (bid,) = [d for d in await iso_documents(world, 1) if isinstance(d, ReserveBidDocument)]
    points = [p for s in bid.bid_time_series for period in s.periods for p in period.points]
    assert any(p.price is not None or p.energy_price is not None for p in points), points


def test_an_option_with_both_signs_is_not_bid_in_one_direction() -> None:
    """`offer_bid` takes the direction from the sign of the option's *sum* and writes
    abs(power): 300 kW up then 100 kW down becomes 0.3 MW up and 0.1 MW *up*."""
    document, _ = need("0.3")
    series = document.bid_time_series[0]
    start = series.periods[0].interval.start
    zone = ZoneInfo(ZONE)
    period = start.astimezone(zone).date()
    from gateway.model import period_bounds

    first = int((start - period_bounds(period, ZONE)[0]) / timedelta(minutes=15)) + 1
    offer = FlexOffer(
        envelope=replace_envelope_for_offer(),  # type: ignore[arg-type]
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=period,
        congestion_point=CP,
        expiration=start,
        currency="EUR",
        options=(
            OfferOption(
                "A", Decimal("1"), (PowerIsp(first, -300_000), PowerIsp(first + 1, 100_000))
            ),
        ),
    )
    bid = offer_bid(
        offer,
        document,
        series.mrid,
        PartyCode(coding_scheme="A01", code=GRIDGATE_EIC),
        datetime.now(UTC),
    )
    said = [
        (s.direction, p.quantity)
        for s in bid.bid_time_series
        for period_ in s.periods
        for p in period_.points
        if p.quantity
    ]
    assert ("A01", Decimal("0.1")) not in said, said


# -- 3b. the A41 against the Statnett response sample ----------------------------------------


async def test_the_a41_echoes_the_orders_order_market_document(world: World) -> None:
    """Statnett's A41 responses (samples/esmp/statnett-mfrr/activation/) carry the request's
    own `order_MarketDocument.mRID`/`revisionNumber` (vRPUllMkQFemNLJ6LDQs1A), not the
    activation document's mRID; gridgate's A41 echoes them too."""
    header = (
        "\n  <order_MarketDocument.mRID>vRPUllMkQFemNLJ6LDQs1A</order_MarketDocument.mRID>"
        "\n  <order_MarketDocument.revisionNumber>3</order_MarketDocument.revisionNumber>"
    )
    _, _, body = activation_of(next_quarter(), timedelta(minutes=30), ["0.1"], extra_header=header)
    assert [r.code for r in (await ack_of(world, body)).reasons] == ["A01"]
    order = await world.agr.wait_for(is_order)
    assert isinstance(order, FlexOrder)
    assert await world.agr.send(answer_to(order, Result.ACCEPTED)) == (200, "")
    (a41,) = [d for d in await iso_documents(world, 1) if isinstance(d, ActivationDocument)]
    assert (a41.order_mrid, a41.order_revision) == ("vRPUllMkQFemNLJ6LDQs1A", 3)


# -- 4. the grid check's tokens ---------------------------------------------------------------


def test_releasing_a_superseded_reservation_keeps_the_live_orders_token() -> None:
    """`check` overwrites `_tokens[(origin, MessageID, recipient)]` and `release` now pops it by the
    token's order: a second check under the same key (a reused MessageID whose commit hits
    the unique key, `_undo` → `release`) leaves the first, committed order un-cancellable."""
    from gateway.model import Envelope

    grid = CapacityLimitCheck({CP: 1_000_000})
    period = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=1)).date()

    def order(power: int) -> FlexOrder:
        return FlexOrder(
            envelope=Envelope(
                message_id="X",
                conversation_id="c",
                sender_domain="dso.example.com",
                recipient_domain=AGR,
                sender_role=Role.DSO,
                timestamp=datetime.now(UTC),
            ),
            isp_duration=timedelta(minutes=15),
            time_zone=ZONE,
            period=period,
            congestion_point=CP,
            isps=(PowerIsp(1, power),),
            price=Decimal(0),
            currency="EUR",
            order_reference="r",
            unsolicited=True,
        )

    committed = grid.check(order(100_000), origin="dso")
    assert committed.accepted
    duplicate = grid.check(order(200_000), origin="dso")  # same key, rolled back
    assert duplicate.reservation is not None
    grid.release(duplicate.reservation)
    given_back = grid.cancel(
        "X", origin="dso", recipient=AGR
    )  # the committed order was never carried out
    assert sum(p for *_, p in given_back) == 100_000
    assert grid.accepted_power(CP, period, 1) == 0


# -- 2b. revisions and deterministic failures -------------------------------------------------


async def test_a_need_naming_a_resource_of_an_aggregator_without_uftp_domain_is_answered(
    world: World,
) -> None:
    """`_qualified` checks `uftp_domain` only on the connecting_Domain path; with a
    registeredResource `need_requests` hits `assert agr.uftp_domain is not None` outside
    any guard, `receive` turns it into 503 'send it again', and the ISO retries for ever
    without an acknowledgement or an audit entry (an MQTT-only aggregator is valid config)."""
    directory = world.gateway.pipeline.directory
    agr, resource = directory.by_cim_resource[RESOURCE]
    directory.by_cim_resource[RESOURCE] = (replace(agr, uftp_domain=None), resource)
    _, body = need("0.1")
    status, answer = await post(world, body)
    assert status == 200, (status, answer)
