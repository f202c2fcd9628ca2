"""Every UFTP 3 message type, over real HTTP, between shapeshifter-uftp parties and gridgate.

Covered, each in 3.1.0 and 3.0.0 unless the type is new in 3.1.0 (who signs what reaches
whom):
- DSO -> AGR, forwarded as the DSO signed it, and the AGR's signed Response back:
  FlexReservationUpdate, FlexOrder with Unsolicited=true (3.1.0), FlexSettlement of order and
  contract settlements, answered with a Disputed FlexOrderSettlementStatus;
- AGR -> DSO, likewise: FlexOffer with two mutually exclusive OfferOptions and their
  MinActivationFactor (then an order of option B), FlexOfferRevocation (then an order of the
  revoked offer, refused by gridgate with its own signed FlexOrderResponse), D-Prognosis
  answered with FlexOrderStatus items, Metering;
- to gridgate as the CRO (`gateway.cro`): DSOPortfolioUpdate/Query and AGRPortfolioUpdate/Query,
  answered by gridgate with its key, the queries from what the updates registered;
- to an outside CRO (shapeshifter's ShapeshifterCroService as a participant): the same four,
  forwarded, and the CRO's signed answers back;
- TestMessage to gridgate (answered by gridgate, as the CRO or as the sender's counterpart)
  and between the parties (forwarded, answered by the library's own TestMessageResponse);
- gridgate's own signed refusal of each other request type, in the recipient's role, accepted
  by the shapeshifter sender (FlexRequest, FlexOffer and FlexOrder: test_shapeshifter_services);
- a forwarded message the recipient refuses for good (gridgate answers "Recipient
  unreachable"), and a message gridgate cannot verify (HTTP 401).
The FlexRequest/FlexOffer/FlexOrder exchange itself is in test_shapeshifter_services.py.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from shapeshifter_uftp import uftp as su
from shapeshifter_uftp.client import ShapeshifterDsoAgrClient
from shapeshifter_uftp.exceptions import ClientTransportException
from xsdata.models.datatype import XmlDuration

from gateway.model import isp_count
from tests.gateway.conftest import public_b64, secret_b64

from .conftest import AGR, CP, CRO, DSO, GRIDGATE, SPARE_CP, ZONE, World, tomorrow
from .exchange import (
    ACCEPTED,
    DISPUTED,
    REJECTED,
    accept_offer,
    accept_request,
    all_accepted,
    audited,
    confirm_order,
    flex_header,
    flex_offer,
    flex_order,
    flex_request,
    isps_tomorrow,
    new_id,
    offer_option,
    power_by_isp,
    same,
    send,
    xml_date,
)

VERSIONS = pytest.mark.parametrize("version", ["3.1.0", "3.0.0"])

CONNECTION = "ean.871685900000000101"  # the aggregator's battery, behind CP
NEIGHBOUR = "ean.871685900000000102"  # behind CP too, nobody's
ELSEWHERE = "ean.871685900000000301"  # the aggregator's, behind no registered congestion point
METER = "E871685900000000101"  # the battery's meter (E and 18 digits, as GOPACS writes it)


def today() -> date:
    return datetime.now(ZoneInfo(ZONE)).date()


def element(kind: type) -> str:
    """The XML element name of a shapeshifter message class."""
    return str(getattr(getattr(kind, "Meta", None), "name", kind.__name__))


def signed_by_the_parties(world: World, *checks: tuple[str, str, str]) -> None:
    """Each service checked the other party's own key (`checks`), never gridgate's."""
    made = set(world.net.verified)
    assert set(checks) <= made, f"expected signature checks {set(checks) - made}; made {made}"
    assert not any(domain == GRIDGATE for _, domain, _ in made)


def answered_by(react: Callable[[Any, Any], Any]) -> Callable[[Any, Any], None]:
    """A reaction that answers with the Response `react` builds, in the request's Version."""

    def reaction(service: Any, message: Any) -> None:
        response = react(service, message)
        response.conversation_id = message.conversation_id
        sender_role = su.origin_map[type(message)].lower()  # "dso" or "agr"
        client_to = getattr(service, f"{sender_role}_client")
        # the library's own signing and transport, back through gridgate
        client_to(message.sender_domain, version=message.version)._send_message(response)

    return reaction


async def agree_on_an_order(world: World, dso_client: Any, agr_client: Any) -> su.FlexOrder:
    """Request, offer and order of option-a, each through gridgate to the other party."""
    conv = world.conversation
    request = flex_request(conv)
    await send(dso_client, "send_flex_request", request)
    await world.agr.inbox.get(su.FlexRequest, lambda m: m.message_id == request.message_id)
    offer = flex_offer(conv, request.message_id)
    await send(agr_client, "send_flex_offer", offer)
    await world.dso.inbox.get(su.FlexOffer, lambda m: m.message_id == offer.message_id)
    order = flex_order(conv, offer.message_id, dict.fromkeys(range(41, 45), -120_000))
    await send(dso_client, "send_flex_order", order)
    await world.agr.inbox.get(su.FlexOrder, lambda m: m.message_id == order.message_id)
    return order


# -- DSO -> AGR -----------------------------------------------------------------------------


@VERSIONS
async def test_a_flex_reservation_update_reaches_the_aggregator_and_its_answer_the_dso(
    world: World, version: str
) -> None:
    conv, last = world.conversation, isps_tomorrow()
    world.agr.reactions = {
        su.FlexReservationUpdate: answered_by(
            lambda _, m: su.FlexReservationUpdateResponse(
                flex_reservation_update_message_id=m.message_id, result=ACCEPTED
            )
        )
    }
    update = su.FlexReservationUpdate(
        **flex_header(),
        message_id=new_id(),
        conversation_id=conv,
        isps=[
            su.FlexReservationUpdateISP(power=200_000, start=1, duration=40),
            su.FlexReservationUpdateISP(power=50_000, start=41, duration=8),
            su.FlexReservationUpdateISP(power=200_000, start=49, duration=last - 48),
        ],
        contract_id="contract-7",
        reference="reservation-1",
    )
    await send(world.dso.agr_client(AGR, version=version), "send_flex_reservation_update", update)
    got = await world.agr.inbox.get(su.FlexReservationUpdate, same(conv))
    assert (got.message_id, got.sender_domain, got.version) == (update.message_id, DSO, version)
    assert (got.contract_id, got.reference, got.congestion_point) == (
        "contract-7",
        "reservation-1",
        CP,
    )
    assert power_by_isp(got.isps) == power_by_isp(update.isps)
    answer = await world.dso.inbox.get(su.FlexReservationUpdateResponse, same(conv))
    assert answer.flex_reservation_update_message_id == update.message_id
    assert (answer.sender_domain, answer.result, answer.version) == (AGR, ACCEPTED, version)
    signed_by_the_parties(world, (AGR, DSO, "DSO"), (DSO, AGR, "AGR"))
    await all_accepted(
        world,
        {
            update.message_id: "FlexReservationUpdate",
            answer.message_id: "FlexReservationUpdateResponse",
        },
        version,
    )


async def test_an_unsolicited_flex_order_reaches_the_aggregator_and_its_answer_the_dso(
    world: World,
) -> None:
    """UFTP 3.1.0 FlexOrder: FlexOfferMessageID is "Mandatory if Unsolicited=false"."""
    conv = world.conversation
    world.agr.reactions = {su.FlexOrder: confirm_order}
    order = flex_order(conv, None, {50: 30_000, 51: 30_000}, ref="unsolicited-1")
    order.service_type = "congestion-management"
    await send(world.dso.agr_client(AGR), "send_flex_order", order)
    got = await world.agr.inbox.get(su.FlexOrder, same(conv))
    assert got.message_id == order.message_id and got.unsolicited is True
    assert got.flex_offer_message_id is None and got.service_type == "congestion-management"
    answer = await world.dso.inbox.get(su.FlexOrderResponse, same(conv))
    assert answer.flex_order_message_id == order.message_id
    assert (answer.sender_domain, answer.result, answer.version) == (AGR, ACCEPTED, "3.1.0")
    signed_by_the_parties(world, (AGR, DSO, "DSO"), (DSO, AGR, "AGR"))
    await all_accepted(
        world, {order.message_id: "FlexOrder", answer.message_id: "FlexOrderResponse"}, "3.1.0"
    )
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 50) == 24_000  # 0.8 of it


@VERSIONS
async def test_the_aggregator_disputes_a_flex_settlement_and_the_dso_receives_its_dispute(
    world: World, version: str
) -> None:
    conv, day = world.conversation, tomorrow()
    dso_client = world.dso.agr_client(AGR, version=version)
    order = await agree_on_an_order(world, dso_client, world.agr.dso_client(DSO, version=version))
    statuses = [
        su.FlexOrderSettlementStatus(order_reference="order-1", disposition=ACCEPTED),
        su.FlexOrderSettlementStatus(
            order_reference="order-0",
            disposition=DISPUTED,
            dispute_reason="ISPs 45-48 were delivered in full",
        ),
    ]
    world.agr.reactions = {
        su.FlexSettlement: answered_by(
            lambda _, m: su.FlexSettlementResponse(
                flex_settlement_message_id=m.message_id,
                result=ACCEPTED,
                flex_order_settlement_statuses=statuses,
            )
        )
    }

    def settled(ref: str, delivered: int) -> su.FlexOrderSettlement:
        return su.FlexOrderSettlement(
            isps=[
                su.FlexOrderSettlementISP(
                    start=41,
                    duration=4,
                    baseline_power=10_000,
                    ordered_flex_power=-96_000,
                    actual_power=10_000 + delivered,
                    delivered_flex_power=delivered,
                    power_deficiency=delivered + 96_000,
                )
            ],
            order_reference=ref,
            period=xml_date(day),
            congestion_point=CP,
            price=Decimal("12.50"),
            penalty=Decimal("1.25"),
            net_settlement=Decimal("11.25"),
        )

    settlement = su.FlexSettlement(
        message_id=new_id(),
        conversation_id=conv,
        flex_order_settlements=[settled("order-1", -96_000), settled("order-0", -80_000)],
        contract_settlements=[
            su.ContractSettlement(
                periods=[
                    su.ContractSettlementPeriod(
                        isps=[
                            su.ContractSettlementISP(
                                start=41,
                                duration=4,
                                reserved_power=200_000,
                                requested_power=150_000,
                                offered_power=120_000,
                                ordered_power=96_000,
                            )
                        ],
                        period=xml_date(day),
                    )
                ],
                contract_id="contract-7",
            )
        ],
        period_start=xml_date(day.replace(day=1)),
        period_end=xml_date(day.replace(day=calendar.monthrange(day.year, day.month)[1])),
        currency="EUR",
    )
    await send(dso_client, "send_flex_settlement", settlement)
    got = await world.agr.inbox.get(su.FlexSettlement, same(conv))
    assert (got.message_id, got.sender_domain, got.version) == (settlement.message_id, DSO, version)
    assert [s.order_reference for s in got.flex_order_settlements] == ["order-1", "order-0"]
    assert [c.contract_id for c in got.contract_settlements] == ["contract-7"]
    answer = await world.dso.inbox.get(su.FlexSettlementResponse, same(conv))
    assert answer.flex_settlement_message_id == settlement.message_id
    assert (answer.sender_domain, answer.result, answer.version) == (AGR, ACCEPTED, version)
    assert [
        (s.order_reference, s.disposition, s.dispute_reason)
        for s in answer.flex_order_settlement_statuses
    ] == [
        ("order-1", ACCEPTED, None),
        ("order-0", DISPUTED, "ISPs 45-48 were delivered in full"),
    ]
    signed_by_the_parties(world, (AGR, DSO, "DSO"), (DSO, AGR, "AGR"))
    accepted = await audited(world, "message.accepted")
    assert accepted[settlement.message_id]["kind"] == "FlexSettlement"
    assert accepted[answer.message_id]["kind"] == "FlexSettlementResponse"
    assert order.message_id in accepted
    assert await audited(world, "message.rejected") == {}


# -- AGR -> DSO -----------------------------------------------------------------------------


@VERSIONS
async def test_a_two_option_offer_reaches_the_dso_which_orders_option_b(
    world: World, version: str
) -> None:
    """UFTP 3 FlexOrder: "ActivationFactor must be >= MinActivationFactor" of the option."""
    conv = world.conversation
    world.agr.reactions = {su.FlexRequest: accept_request, su.FlexOrder: confirm_order}
    world.dso.reactions = {su.FlexOffer: accept_offer}
    dso_client = world.dso.agr_client(AGR, version=version)
    request = flex_request(conv)
    await send(dso_client, "send_flex_request", request)
    await world.dso.inbox.get(su.FlexRequestResponse, same(conv))

    option_a = offer_option("option-a", dict.fromkeys(range(41, 45), -120_000), "12.50", "1.00")
    option_b = offer_option("option-b", {41: -60_000, 42: -60_000}, "7.00", "0.50")
    offer = flex_offer(conv, request.message_id, options=[option_a, option_b])
    await send(world.agr.dso_client(DSO, version=version), "send_flex_offer", offer)
    got = await world.dso.inbox.get(su.FlexOffer, same(conv))
    assert (got.message_id, got.sender_domain, got.version) == (offer.message_id, AGR, version)
    assert [
        (o.option_reference, Decimal(o.price), Decimal(o.min_activation_factor))
        for o in got.offer_options
    ] == [("option-a", Decimal("12.5"), Decimal(1)), ("option-b", Decimal(7), Decimal("0.5"))]
    assert power_by_isp(got.offer_options[1].isps) == {41: -60_000, 42: -60_000}
    offer_answer = await world.agr.inbox.get(su.FlexOfferResponse, same(conv))
    assert (offer_answer.sender_domain, offer_answer.result) == (DSO, ACCEPTED)

    # below option B's MinActivationFactor: gridgate refuses it, in the AGR's place
    powers = power_by_isp(option_b.isps)
    too_little = flex_order(
        conv, offer.message_id, powers, option="option-b", price="7.00", activation_factor="0.4"
    )
    await send(dso_client, "send_flex_order", too_little)
    refused = await world.dso.inbox.get(
        su.FlexOrderResponse, lambda m: m.flex_order_message_id == too_little.message_id
    )
    assert (refused.sender_domain, refused.result, refused.version) == (GRIDGATE, REJECTED, version)
    assert refused.rejection_reason.startswith("ActivationFactor below MinActivationFactor")
    assert (DSO, GRIDGATE, "AGR") in world.net.verified

    order = flex_order(
        conv, offer.message_id, powers, option="option-b", price="7.00", activation_factor="0.6"
    )
    await send(dso_client, "send_flex_order", order)
    got_order = await world.agr.inbox.get(su.FlexOrder, same(conv))
    assert got_order.message_id == order.message_id  # the refused one never reached it
    assert (got_order.option_reference, Decimal(got_order.activation_factor)) == (
        "option-b",
        Decimal("0.6"),
    )
    answer = await world.dso.inbox.get(
        su.FlexOrderResponse, lambda m: m.flex_order_message_id == order.message_id
    )
    assert (answer.sender_domain, answer.result, answer.version) == (AGR, ACCEPTED, version)
    await world.settle()
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 41) == -36_000
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 43) == 0
    accepted = await audited(world, "message.accepted")
    assert sorted(d["kind"] for d in accepted.values()) == sorted(
        [
            "FlexRequest",
            "FlexRequestResponse",
            "FlexOffer",
            "FlexOfferResponse",
            "FlexOrder",
            "FlexOrderResponse",
        ]
    )
    ((refused_id, rejected),) = (await audited(world, "message.rejected")).items()
    assert refused_id == too_little.message_id
    assert rejected["rule"] == "ActivationFactor below MinActivationFactor"


@VERSIONS
async def test_a_revoked_offer_reaches_the_dso_and_an_order_of_it_is_refused_by_gridgate(
    world: World, version: str
) -> None:
    conv = world.conversation
    world.dso.reactions = {
        su.FlexOffer: accept_offer,
        su.FlexOfferRevocation: answered_by(
            lambda _, m: su.FlexOfferRevocationResponse(
                flex_offer_revocation_message_id=m.message_id, result=ACCEPTED
            )
        ),
    }
    dso_client = world.dso.agr_client(AGR, version=version)
    agr_client = world.agr.dso_client(DSO, version=version)
    request = flex_request(conv)
    await send(dso_client, "send_flex_request", request)
    await world.agr.inbox.get(su.FlexRequest, same(conv))
    offer = flex_offer(conv, request.message_id)
    await send(agr_client, "send_flex_offer", offer)
    await world.agr.inbox.get(su.FlexOfferResponse, same(conv))

    revocation = su.FlexOfferRevocation(
        message_id=new_id(), conversation_id=conv, flex_offer_message_id=offer.message_id
    )
    await send(agr_client, "send_flex_offer_revocation", revocation)
    got = await world.dso.inbox.get(su.FlexOfferRevocation, same(conv))
    assert (got.message_id, got.sender_domain, got.version) == (revocation.message_id, AGR, version)
    assert got.flex_offer_message_id == offer.message_id
    answer = await world.agr.inbox.get(su.FlexOfferRevocationResponse, same(conv))
    assert answer.flex_offer_revocation_message_id == revocation.message_id
    assert (answer.sender_domain, answer.result, answer.version) == (DSO, ACCEPTED, version)
    signed_by_the_parties(world, (AGR, DSO, "DSO"), (DSO, AGR, "AGR"))

    order = flex_order(conv, offer.message_id, dict.fromkeys(range(41, 45), -120_000))
    await send(dso_client, "send_flex_order", order)
    refused = await world.dso.inbox.get(su.FlexOrderResponse, same(conv))
    assert refused.flex_order_message_id == order.message_id
    assert (refused.sender_domain, refused.result, refused.version) == (GRIDGATE, REJECTED, version)
    assert refused.rejection_reason.startswith("Reference message revoked")
    assert offer.message_id in refused.rejection_reason
    assert (DSO, GRIDGATE, "AGR") in world.net.verified  # the DSO checked gridgate's signature
    await world.settle()
    assert world.agr.inbox.of(su.FlexOrder) == []
    (rejected,) = (await audited(world, "message.rejected")).values()
    assert rejected["rule"] == "Reference message revoked"


@VERSIONS
async def test_a_d_prognosis_reaches_the_dso_and_its_flex_order_statuses_the_aggregator(
    world: World, version: str
) -> None:
    conv, last = world.conversation, isps_tomorrow()
    agr_client = world.agr.dso_client(DSO, version=version)
    order = await agree_on_an_order(world, world.dso.agr_client(AGR, version=version), agr_client)
    world.dso.reactions = {
        su.DPrognosis: answered_by(
            lambda _, m: su.DPrognosisResponse(
                d_prognosis_message_id=m.message_id,
                result=ACCEPTED,
                flex_order_statuses=[
                    su.FlexOrderStatus(flex_order_message_id=order.message_id, is_validated=True)
                ],
            )
        )
    }
    prognosis = su.DPrognosis(
        **flex_header(),
        message_id=new_id(),
        conversation_id=conv,
        isps=[
            su.DPrognosisISP(power=10_000, start=1, duration=40),
            su.DPrognosisISP(power=-86_000, start=41, duration=4),  # the order, activated
            su.DPrognosisISP(power=10_000, start=45, duration=last - 44),
        ],
        revision=1,
    )
    await send(agr_client, "send_d_prognosis", prognosis)
    got = await world.dso.inbox.get(su.DPrognosis, same(conv))
    assert (got.message_id, got.sender_domain, got.version) == (prognosis.message_id, AGR, version)
    assert got.revision == 1 and power_by_isp(got.isps) == power_by_isp(prognosis.isps)
    answer = await world.agr.inbox.get(su.DPrognosisResponse, same(conv))
    assert answer.d_prognosis_message_id == prognosis.message_id
    assert (answer.sender_domain, answer.result, answer.version) == (DSO, ACCEPTED, version)
    assert [(s.flex_order_message_id, s.is_validated) for s in answer.flex_order_statuses] == [
        (order.message_id, True)
    ]
    signed_by_the_parties(world, (AGR, DSO, "DSO"), (DSO, AGR, "AGR"))
    accepted = await audited(world, "message.accepted")
    assert accepted[prognosis.message_id]["kind"] == "D-Prognosis"
    assert accepted[answer.message_id]["kind"] == "D-PrognosisResponse"
    assert await audited(world, "message.rejected") == {}


@VERSIONS
async def test_metering_reaches_the_dso_and_its_answer_the_aggregator(
    world: World, version: str
) -> None:
    conv, yesterday = world.conversation, today() - timedelta(days=1)
    count = isp_count(yesterday, ZONE, timedelta(minutes=15))
    world.dso.reactions = {
        su.Metering: answered_by(
            lambda _, m: su.MeteringResponse(metering_message_id=m.message_id, result=ACCEPTED)
        )
    }
    metering = su.Metering(
        message_id=new_id(),
        conversation_id=conv,
        profiles=[
            su.MeteringProfile(
                isps=[
                    su.MeteringISP(start=i, value=Decimal(i) / 4 - 10) for i in range(1, count + 1)
                ],
                profile_type=su.MeteringProfileEnum.POWER,
                unit=su.MeteringUnit.K_W,
            ),
            su.MeteringProfile(
                isps=[
                    su.MeteringISP(start=1, value=Decimal("123456.789")),
                    su.MeteringISP(start=2, value=Decimal("123457.001")),
                ],
                profile_type=su.MeteringProfileEnum.IMPORT_METER_READING,
                unit=su.MeteringUnit.K_WH,
            ),
        ],
        revision=1,
        isp_duration=XmlDuration("PT15M"),
        time_zone=ZONE,
        period=xml_date(yesterday),
        ean=METER,
    )
    await send(world.agr.dso_client(DSO, version=version), "send_metering", metering)
    got = await world.dso.inbox.get(su.Metering, same(conv))
    assert (got.message_id, got.sender_domain, got.version) == (metering.message_id, AGR, version)
    assert got.ean == METER and str(got.period) == yesterday.isoformat()
    assert [(p.profile_type, len(p.isps)) for p in got.profiles] == [
        (su.MeteringProfileEnum.POWER, count),
        (su.MeteringProfileEnum.IMPORT_METER_READING, 2),
    ]
    answer = await world.agr.inbox.get(su.MeteringResponse, same(conv))
    assert answer.metering_message_id == metering.message_id
    assert (answer.sender_domain, answer.result, answer.version) == (DSO, ACCEPTED, version)
    signed_by_the_parties(world, (AGR, DSO, "DSO"), (DSO, AGR, "AGR"))
    await all_accepted(
        world, {metering.message_id: "Metering", answer.message_id: "MeteringResponse"}, version
    )


# -- the common reference operator ----------------------------------------------------------


def dso_portfolio_update(conv: str, start: date) -> su.DsoPortfolioUpdate:
    return su.DsoPortfolioUpdate(
        message_id=new_id(),
        conversation_id=conv,
        congestion_points=[
            su.DsoPortfolioUpdateCongestionPoint(
                connections=[
                    su.DsoPortfolioUpdateConnection(
                        entity_address=CONNECTION, start_period=xml_date(start)
                    ),
                    su.DsoPortfolioUpdateConnection(
                        entity_address=NEIGHBOUR, start_period=xml_date(start)
                    ),
                ],
                entity_address=CP,
                start_period=xml_date(start),
                mutex_offers_supported=True,
                day_ahead_redispatch_by=su.RedispatchBy.DSO,
                intraday_redispatch_by=su.RedispatchBy.AGR,
            )
        ],
        time_zone=ZONE,
    )


def agr_portfolio_update(conv: str, start: date) -> su.AgrPortfolioUpdate:
    return su.AgrPortfolioUpdate(
        message_id=new_id(),
        conversation_id=conv,
        connections=[
            su.AgrPortfolioUpdateConnection(
                entity_address=CONNECTION, start_period=xml_date(start)
            ),
            su.AgrPortfolioUpdateConnection(entity_address=ELSEWHERE, start_period=xml_date(start)),
        ],
        time_zone=ZONE,
    )


def dso_view(response: su.DsoPortfolioQueryResponse) -> tuple[str, list[tuple[str, str | None]]]:
    cp = response.congestion_point
    return cp.entity_address, [(c.entity_address, c.agr_domain) for c in cp.connections]


def agr_views(response: su.AgrPortfolioQueryResponse) -> list[Any]:
    return [
        (
            [
                (
                    p.dso_domain,
                    [
                        (
                            cp.entity_address,
                            [c.entity_address for c in cp.connections],
                            cp.mutex_offers_supported,
                            cp.day_ahead_redispatch_by,
                            cp.intraday_redispatch_by,
                        )
                        for cp in p.congestion_points
                    ],
                )
                for p in view.dso_portfolios
            ],
            [c.entity_address for c in view.connections],
        )
        for view in response.dso_views
    ]


# what the register says once both updates are in, as each party is told
DSO_VIEW = (CP, [(CONNECTION, AGR), (NEIGHBOUR, None)])
AGR_VIEW = [
    (
        [(DSO, [(CP, [CONNECTION], True, su.RedispatchBy.DSO, su.RedispatchBy.AGR)])],
        [ELSEWHERE],
    )
]


@VERSIONS
async def test_gridgate_as_the_cro_registers_both_portfolios_and_answers_both_queries(
    world: World, version: str
) -> None:
    """gateway.cro: gridgate answers the CRO's four messages to its own domain itself."""
    conv, start, day = world.conversation, today(), tomorrow()
    dso_client = world.dso.cro_client(GRIDGATE, version=version)
    agr_client = world.agr.cro_client(GRIDGATE, version=version)

    dso_update = dso_portfolio_update(conv, start)
    await send(dso_client, "send_dso_portfolio_update", dso_update)
    dso_updated = await world.dso.inbox.get(su.DsoPortfolioUpdateResponse, same(conv))
    agr_update = agr_portfolio_update(conv, start)
    await send(agr_client, "send_agr_portfolio_update", agr_update)
    agr_updated = await world.agr.inbox.get(su.AgrPortfolioUpdateResponse, same(conv))
    assert dso_updated.dso_portfolio_update_message_id == dso_update.message_id
    assert agr_updated.agr_portfolio_update_message_id == agr_update.message_id
    for answer, party in ((dso_updated, DSO), (agr_updated, AGR)):
        assert (answer.sender_domain, answer.recipient_domain) == (GRIDGATE, party)
        assert (answer.result, answer.rejection_reason, answer.version) == (ACCEPTED, None, version)

    dso_query = su.DsoPortfolioQuery(
        message_id=new_id(),
        conversation_id=conv,
        time_zone=ZONE,
        period=xml_date(day),
        entity_address=CP,
    )
    await send(dso_client, "send_dso_portfolio_query", dso_query)
    dso_answer = await world.dso.inbox.get(su.DsoPortfolioQueryResponse, same(conv))
    agr_query = su.AgrPortfolioQuery(
        message_id=new_id(), conversation_id=conv, time_zone=ZONE, period=xml_date(day)
    )
    await send(agr_client, "send_agr_portfolio_query", agr_query)
    agr_answer = await world.agr.inbox.get(su.AgrPortfolioQueryResponse, same(conv))
    assert dso_answer.dso_portfolio_query_message_id == dso_query.message_id
    assert agr_answer.agr_portfolio_query_message_id == agr_query.message_id
    for answer in (dso_answer, agr_answer):
        assert (answer.sender_domain, answer.result, answer.version) == (
            GRIDGATE,
            ACCEPTED,
            version,
        )
        assert (answer.time_zone, str(answer.period)) == (ZONE, day.isoformat())
    assert dso_view(dso_answer) == DSO_VIEW
    assert agr_views(agr_answer) == AGR_VIEW

    # both checked gridgate's signature, as the CRO's; gridgate checked theirs
    assert {(DSO, GRIDGATE, "CRO"), (AGR, GRIDGATE, "CRO")} == set(world.net.verified)
    await world.settle()
    accepted = await audited(world, "message.accepted")
    assert {accepted[m.message_id]["kind"] for m in (dso_update, agr_update)} == {
        "DSOPortfolioUpdate",
        "AGRPortfolioUpdate",
    }
    assert {accepted[m.message_id]["kind"] for m in (dso_query, agr_query)} == {
        "DSOPortfolioQuery",
        "AGRPortfolioQuery",
    }
    assert all(d["to"] == GRIDGATE and d["version"] == version for d in accepted.values())
    assert await audited(world, "message.rejected") == {}
    assert world.cro.inbox.messages == []  # the outside CRO heard nothing of it


async def test_gridgate_as_the_cro_holds_offers_to_the_dsos_registered_mutex_offers_supported(
    world: World,
) -> None:
    """UFTP 3 FlexOffer: "Reject multi-option offers when MutexOffersSupported=false".

    The DSO registers its congestion point with MutexOffersSupported=false at gridgate as its
    CRO, and gridgate tells the aggregator so; a two-option offer there must then be refused.
    """
    conv = world.conversation
    update = dso_portfolio_update(conv, today())
    update.congestion_points[0].mutex_offers_supported = False
    await send(world.dso.cro_client(GRIDGATE), "send_dso_portfolio_update", update)
    assert (await world.dso.inbox.get(su.DsoPortfolioUpdateResponse, same(conv))).result == ACCEPTED
    agr_update = agr_portfolio_update(conv, today())
    await send(world.agr.cro_client(GRIDGATE), "send_agr_portfolio_update", agr_update)
    await world.agr.inbox.get(su.AgrPortfolioUpdateResponse, same(conv))
    query = su.AgrPortfolioQuery(
        message_id=new_id(), conversation_id=conv, time_zone=ZONE, period=xml_date(tomorrow())
    )
    await send(world.agr.cro_client(GRIDGATE), "send_agr_portfolio_query", query)
    told = await world.agr.inbox.get(su.AgrPortfolioQueryResponse, same(conv))
    ((_, [(cp, _, mutex, _, _)]),) = agr_views(told)[0][0]
    assert (cp, mutex) == (CP, False)  # what gridgate as the CRO told the aggregator

    world.dso.reactions = {su.FlexOffer: accept_offer}
    request = flex_request(conv)
    await send(world.dso.agr_client(AGR), "send_flex_request", request)
    await world.agr.inbox.get(su.FlexRequest, same(conv))
    options = [
        offer_option("option-a", {41: -60_000}, "5.00"),
        offer_option("option-b", {42: -60_000}, "5.00"),
    ]
    offer = flex_offer(conv, request.message_id, options=options)
    await send(world.agr.dso_client(DSO), "send_flex_offer", offer)
    answer = await world.agr.inbox.get(su.FlexOfferResponse, same(conv))
    assert (answer.sender_domain, answer.result) == (GRIDGATE, REJECTED), (
        f"the two-option FlexOffer went on to the DSO, which answered {answer.result}"
    )
    assert answer.rejection_reason.startswith("Multiple options not supported: ")
    assert world.dso.inbox.of(su.FlexOffer) == []


def cro_answers(world: World) -> dict[type, Callable[[Any, Any], None]]:
    """The outside CRO answers each of its four messages from a register of its own."""
    return {
        su.DsoPortfolioUpdate: answered_by(
            lambda _, m: su.DsoPortfolioUpdateResponse(
                dso_portfolio_update_message_id=m.message_id, result=ACCEPTED
            )
        ),
        su.AgrPortfolioUpdate: answered_by(
            lambda _, m: su.AgrPortfolioUpdateResponse(
                agr_portfolio_update_message_id=m.message_id, result=ACCEPTED
            )
        ),
        su.DsoPortfolioQuery: answered_by(
            lambda _, m: su.DsoPortfolioQueryResponse(
                dso_portfolio_query_message_id=m.message_id,
                result=ACCEPTED,
                congestion_point=su.DsoPortfolioQueryCongestionPoint(
                    connections=[
                        su.DsoPortfolioQueryConnection(entity_address=CONNECTION, agr_domain=AGR),
                        su.DsoPortfolioQueryConnection(entity_address=NEIGHBOUR),
                    ],
                    entity_address=m.entity_address,
                ),
                time_zone=m.time_zone,
                period=m.period,
            )
        ),
        su.AgrPortfolioQuery: answered_by(
            lambda _, m: su.AgrPortfolioQueryResponse(
                agr_portfolio_query_message_id=m.message_id,
                result=ACCEPTED,
                dso_views=[
                    su.AgrPortfolioQueryResponseDSOView(
                        dso_portfolios=[
                            su.AgrPortfolioQueryResponseDSOPortfolio(
                                congestion_points=[
                                    su.AgrPortfolioQueryResponseCongestionPoint(
                                        connections=[
                                            su.AgrPortfolioQueryResponseConnection(
                                                entity_address=CONNECTION
                                            )
                                        ],
                                        entity_address=CP,
                                        mutex_offers_supported=True,
                                        day_ahead_redispatch_by=su.RedispatchBy.DSO,
                                        intraday_redispatch_by=su.RedispatchBy.AGR,
                                    )
                                ],
                                dso_domain=DSO,
                            )
                        ],
                        connections=[
                            su.AgrPortfolioQueryResponseConnection(entity_address=ELSEWHERE)
                        ],
                    )
                ],
                time_zone=m.time_zone,
                period=m.period,
            )
        ),
    }


SEND = {
    su.DsoPortfolioUpdate: "dso_portfolio_update",
    su.AgrPortfolioUpdate: "agr_portfolio_update",
    su.DsoPortfolioQuery: "dso_portfolio_query",
    su.AgrPortfolioQuery: "agr_portfolio_query",
}


@VERSIONS
async def test_an_outside_cro_receives_both_portfolios_and_queries_and_its_answers_come_back(
    world: World, version: str
) -> None:
    conv, start, day = world.conversation, today(), tomorrow()
    world.cro.reactions = cro_answers(world)
    dso_client = world.dso.cro_client(CRO, version=version)
    agr_client = world.agr.cro_client(CRO, version=version)
    sent = {
        "DSOPortfolioUpdate": (dso_client, dso_portfolio_update(conv, start)),
        "AGRPortfolioUpdate": (agr_client, agr_portfolio_update(conv, start)),
        "DSOPortfolioQuery": (
            dso_client,
            su.DsoPortfolioQuery(
                message_id=new_id(),
                conversation_id=conv,
                time_zone=ZONE,
                period=xml_date(day),
                entity_address=CP,
            ),
        ),
        "AGRPortfolioQuery": (
            agr_client,
            su.AgrPortfolioQuery(
                message_id=new_id(), conversation_id=conv, time_zone=ZONE, period=xml_date(day)
            ),
        ),
    }
    for client, message in sent.values():
        await send(client, f"send_{SEND[type(message)]}", message)

    for name, (_, message) in sent.items():
        got = await world.cro.inbox.get(type(message), same(conv))
        assert (got.message_id, got.recipient_domain, got.version) == (
            message.message_id,
            CRO,
            version,
        ), name
    dso_updated = await world.dso.inbox.get(su.DsoPortfolioUpdateResponse, same(conv))
    agr_updated = await world.agr.inbox.get(su.AgrPortfolioUpdateResponse, same(conv))
    dso_answer = await world.dso.inbox.get(su.DsoPortfolioQueryResponse, same(conv))
    agr_answer = await world.agr.inbox.get(su.AgrPortfolioQueryResponse, same(conv))
    answers = (dso_updated, agr_updated, dso_answer, agr_answer)
    references = (
        dso_updated.dso_portfolio_update_message_id,
        agr_updated.agr_portfolio_update_message_id,
        dso_answer.dso_portfolio_query_message_id,
        agr_answer.agr_portfolio_query_message_id,
    )
    assert references == tuple(m.message_id for _, m in sent.values())
    for answer in answers:
        assert (answer.sender_domain, answer.result, answer.version) == (CRO, ACCEPTED, version)
    assert dso_view(dso_answer) == DSO_VIEW
    assert agr_views(agr_answer) == AGR_VIEW
    signed_by_the_parties(
        world, (CRO, DSO, "DSO"), (CRO, AGR, "AGR"), (DSO, CRO, "CRO"), (AGR, CRO, "CRO")
    )
    await all_accepted(
        world,
        {m.message_id: name for name, (_, m) in sent.items()}
        | {a.message_id: element(type(a)) for a in answers},
        version,
    )
    assert world.gateway.pipeline.cro is not None
    assert world.gateway.pipeline.cro.congestion_points == {}  # not gridgate's register


# -- TestMessage ----------------------------------------------------------------------------


@VERSIONS
@pytest.mark.parametrize("gridgate_is_cro", [True, False], ids=["as-cro", "not-cro"])
async def test_gridgate_answers_a_test_message_to_its_own_domain(
    world: World, version: str, gridgate_is_cro: bool
) -> None:
    """UFTP 3 TestMessage: any role sends one to any other; gridgate answers those it gets."""
    conv = world.conversation
    senders = {
        DSO: (world.dso, world.dso.agr_client(GRIDGATE, version=version), "AGR"),
        AGR: (world.agr, world.agr.dso_client(GRIDGATE, version=version), "DSO"),
        CRO: (world.cro, world.cro.dso_client(GRIDGATE, version=version), "DSO"),
    }
    sent = {}
    for domain, (_, client, _) in senders.items():
        sent[domain] = su.TestMessage(message_id=new_id(), conversation_id=conv)
        await send(client, "send_test_message", sent[domain])
    for domain, (service, _, counterpart) in senders.items():
        answer = await service.inbox.get(su.TestMessageResponse, same(conv))
        assert (answer.sender_domain, answer.recipient_domain) == (GRIDGATE, domain)
        assert answer.version == version
        # signed by gridgate: as the CRO of its domain, else as the sender's counterpart
        role = "CRO" if gridgate_is_cro else counterpart
        assert (domain, GRIDGATE, role) in world.net.verified
    await world.settle()
    accepted = await audited(world, "message.accepted")
    assert {mid: (d["kind"], d["from"]) for mid, d in accepted.items()} == {
        m.message_id: ("TestMessage", domain) for domain, m in sent.items()
    }
    delivered = [r for r in await world.outbox() if r.conversation_id == conv]
    assert len(delivered) == 3 and {r.status for r in delivered} == {"delivered"}
    assert world.cro.inbox.of(su.TestMessage) == []  # nothing was forwarded


@VERSIONS
async def test_a_test_message_between_the_parties_is_forwarded_and_answered(
    world: World, version: str
) -> None:
    conv = world.conversation
    pairs = [
        (world.dso, world.dso.agr_client(AGR, version=version), world.agr),
        (world.agr, world.agr.dso_client(DSO, version=version), world.dso),
        (world.dso, world.dso.cro_client(CRO, version=version), world.cro),
        (world.cro, world.cro.agr_client(AGR, version=version), world.agr),
    ]
    kinds: dict[str, str] = {}
    for sender, client, recipient in pairs:
        test = su.TestMessage(message_id=new_id(), conversation_id=conv)
        await send(client, "send_test_message", test)
        got = await recipient.inbox.get(
            su.TestMessage, lambda m, t=test: m.message_id == t.message_id
        )
        assert (got.sender_domain, got.version) == (sender.sender_domain, version)
        # the library answers by itself, through gridgate, signed with the recipient's key
        answer = await sender.inbox.get(
            su.TestMessageResponse,
            lambda m, r=recipient: m.sender_domain == r.sender_domain and m.version == version,
        )
        assert answer.recipient_domain == sender.sender_domain
        kinds |= {test.message_id: "TestMessage", answer.message_id: "TestMessageResponse"}
    signed_by_the_parties(
        world,
        (AGR, DSO, "DSO"),
        (DSO, AGR, "AGR"),
        (CRO, DSO, "DSO"),
        (DSO, CRO, "CRO"),
        (AGR, CRO, "CRO"),
        (CRO, AGR, "AGR"),
    )
    await all_accepted(world, kinds, version)


# -- gridgate's own signed refusals, of every request type it can refuse with a Response ----

NOBODYS_CP = "ean.871685900077777777"  # no DSO owns it


def _reservation_update(conv: str) -> su.FlexReservationUpdate:
    return su.FlexReservationUpdate(
        **flex_header(NOBODYS_CP),
        message_id=new_id(),
        conversation_id=conv,
        isps=[su.FlexReservationUpdateISP(power=50_000, start=41, duration=8)],
        contract_id="contract-7",
        reference="reservation-1",
    )


def _prognosis(conv: str) -> su.DPrognosis:
    return su.DPrognosis(
        **flex_header(SPARE_CP),
        message_id=new_id(),
        conversation_id=conv,
        isps=[su.DPrognosisISP(power=10_000, start=1, duration=isps_tomorrow())],
        revision=1,
    )


def _revocation(conv: str) -> su.FlexOfferRevocation:
    return su.FlexOfferRevocation(
        message_id=new_id(), conversation_id=conv, flex_offer_message_id=new_id()
    )


def _settlement(conv: str) -> su.FlexSettlement:
    day = tomorrow()

    def settled(ref: str, cp: str) -> su.FlexOrderSettlement:
        return su.FlexOrderSettlement(
            isps=[
                su.FlexOrderSettlementISP(
                    start=41,
                    baseline_power=0,
                    ordered_flex_power=-10_000,
                    actual_power=-10_000,
                    delivered_flex_power=-10_000,
                )
            ],
            order_reference=ref,
            period=xml_date(day),
            congestion_point=cp,
            price=Decimal(1),
            net_settlement=Decimal(1),
        )

    return su.FlexSettlement(
        message_id=new_id(),
        conversation_id=conv,
        flex_order_settlements=[settled("order-1", CP), settled("order-2", NOBODYS_CP)],
        contract_settlements=[
            su.ContractSettlement(
                periods=[
                    su.ContractSettlementPeriod(
                        isps=[su.ContractSettlementISP(start=1, reserved_power=0)],
                        period=xml_date(day),
                    )
                ],
                contract_id="contract-7",
            )
        ],
        period_start=xml_date(day.replace(day=1)),
        period_end=xml_date(day.replace(day=calendar.monthrange(day.year, day.month)[1])),
        currency="EUR",
    )


def _metering(conv: str) -> su.Metering:
    yesterday = today() - timedelta(days=1)
    return su.Metering(
        message_id=new_id(),
        conversation_id=conv,
        profiles=[
            su.MeteringProfile(
                isps=[su.MeteringISP(start=1, value=Decimal(1))],
                profile_type=su.MeteringProfileEnum.POWER,
                unit=su.MeteringUnit.K_W,
            )
        ],
        revision=1,
        isp_duration=XmlDuration("PT30M"),  # the market's is PT15M
        time_zone=ZONE,
        period=xml_date(yesterday),
        ean=METER,
    )


def _dso_portfolio_update(conv: str) -> su.DsoPortfolioUpdate:
    update = dso_portfolio_update(conv, today())
    update.congestion_points[0].entity_address = NOBODYS_CP
    return update


def _dso_portfolio_query(conv: str) -> su.DsoPortfolioQuery:
    return su.DsoPortfolioQuery(  # the DSO's own, but it registered nothing yet
        message_id=new_id(),
        conversation_id=conv,
        time_zone=ZONE,
        period=xml_date(tomorrow()),
        entity_address=CP,
    )


def _agr_portfolio_update(conv: str) -> su.AgrPortfolioUpdate:
    update = agr_portfolio_update(conv, today())
    update.time_zone = "Europe/London"  # the market's is Europe/Amsterdam
    return update


# type: (sender, recipient, builder, its Response, the Response's reference, rule, the role
# gridgate signs in)
REFUSALS: dict[str, tuple[str, str, Callable[[str], Any], type, str, str, str]] = {
    "FlexReservationUpdate": (
        "dso",
        AGR,
        _reservation_update,
        su.FlexReservationUpdateResponse,
        "flex_reservation_update_message_id",
        "Invalid CongestionPoint",
        "AGR",
    ),
    "D-Prognosis": (
        "agr",
        DSO,
        _prognosis,
        su.DPrognosisResponse,
        "d_prognosis_message_id",
        "Unregistered resources",
        "DSO",
    ),
    "FlexOfferRevocation": (
        "agr",
        DSO,
        _revocation,
        su.FlexOfferRevocationResponse,
        "flex_offer_revocation_message_id",
        "Unknown reference",
        "DSO",
    ),
    "FlexSettlement": (
        "dso",
        AGR,
        _settlement,
        su.FlexSettlementResponse,
        "flex_settlement_message_id",
        "Invalid CongestionPoint",
        "AGR",
    ),
    "Metering": (
        "agr",
        DSO,
        _metering,
        su.MeteringResponse,
        "metering_message_id",
        "ISP duration rejected",
        "DSO",
    ),
    "DSOPortfolioUpdate": (
        "dso",
        GRIDGATE,
        _dso_portfolio_update,
        su.DsoPortfolioUpdateResponse,
        "dso_portfolio_update_message_id",
        "Invalid CongestionPoint",
        "CRO",
    ),
    "DSOPortfolioQuery": (
        "dso",
        GRIDGATE,
        _dso_portfolio_query,
        su.DsoPortfolioQueryResponse,
        "dso_portfolio_query_message_id",
        "Invalid CongestionPoint",
        "CRO",
    ),
    "AGRPortfolioUpdate": (
        "agr",
        GRIDGATE,
        _agr_portfolio_update,
        su.AgrPortfolioUpdateResponse,
        "agr_portfolio_update_message_id",
        "TimeZone rejected",
        "CRO",
    ),
}
SENDING = {
    su.FlexReservationUpdate: ("agr_client", "send_flex_reservation_update"),
    su.DPrognosis: ("dso_client", "send_d_prognosis"),
    su.FlexOfferRevocation: ("dso_client", "send_flex_offer_revocation"),
    su.FlexSettlement: ("agr_client", "send_flex_settlement"),
    su.Metering: ("dso_client", "send_metering"),
    su.DsoPortfolioUpdate: ("cro_client", "send_dso_portfolio_update"),
    su.DsoPortfolioQuery: ("cro_client", "send_dso_portfolio_query"),
    su.AgrPortfolioUpdate: ("cro_client", "send_agr_portfolio_update"),
}


@VERSIONS
@pytest.mark.parametrize("name", list(REFUSALS))
async def test_gridgates_signed_refusal_reaches_the_shapeshifter_sender(
    world: World, version: str, name: str
) -> None:
    """UFTP 3 message validation: a message that breaks a rule is answered Rejected."""
    conv = world.conversation
    party, recipient, build, response, reference, rule, role = REFUSALS[name]
    service = getattr(world, party)
    message = build(conv)
    client_of, method = SENDING[type(message)]
    client = getattr(service, client_of)(recipient, version=version)
    await send(client, method, message)
    answer = await service.inbox.get(response, same(conv))
    assert getattr(answer, reference) == message.message_id
    assert (answer.sender_domain, answer.recipient_domain) == (GRIDGATE, service.sender_domain)
    assert (answer.result, answer.version) == (REJECTED, version)
    assert answer.rejection_reason.startswith(f"{rule}: ")
    # the shapeshifter sender checked gridgate's signature, in the role of the recipient
    assert (service.sender_domain, GRIDGATE, role) in world.net.verified
    if isinstance(answer, su.FlexSettlementResponse):  # each order settlement is disputed
        assert [
            (s.order_reference, s.disposition, s.dispute_reason)
            for s in answer.flex_order_settlement_statuses
        ] == [
            ("order-1", DISPUTED, answer.rejection_reason),
            ("order-2", DISPUTED, answer.rejection_reason),
        ]
    await world.settle()
    for other in (world.dso, world.agr, world.cro):
        assert other.inbox.of(type(message)) == []  # nothing was forwarded
    ((refused, rejected),) = (await audited(world, "message.rejected")).items()
    assert (refused, rejected["kind"], rejected["rule"]) == (message.message_id, name, rule)
    (queued,) = rejected["out"]
    assert queued["what"] == element(response) and queued["result"] == "Rejected"


async def test_an_agr_portfolio_query_about_nothing_registered_is_refused_at_once(
    world: World,
) -> None:
    """The 3.x AGRPortfolioQueryResponse needs a DSO-View even when Rejected: no Response
    can say "nothing registered", so gridgate refuses the query synchronously."""
    query = su.AgrPortfolioQuery(
        message_id=new_id(),
        conversation_id=world.conversation,
        time_zone=ZONE,
        period=xml_date(tomorrow()),
    )
    with pytest.raises(ClientTransportException) as refused:
        await send(world.agr.cro_client(GRIDGATE), "send_agr_portfolio_query", query)
    assert refused.value.response.status_code == 400
    assert refused.value.response.text.startswith("Invalid CongestionPoint: ")
    (rejected,) = (await audited(world, "message.rejected")).values()
    assert rejected["rule"] == "Invalid CongestionPoint" and rejected["answered"] == "sync"


# -- what goes wrong on the way --------------------------------------------------------------


async def test_a_message_the_recipient_refuses_for_good_is_answered_by_gridgate(
    world: World,
) -> None:
    """Forwarded, then refused with HTTP 401 by the aggregator (it holds another key for the
    DSO): the DSO gets gridgate's signed FlexRequestResponse, Rejected: Recipient unreachable."""
    conv = world.conversation
    known = world.net.trusted[(DSO, "DSO")]
    world.net.trusted[(DSO, "DSO")] = public_b64(Ed25519PrivateKey.generate())
    try:
        request = flex_request(conv)
        await send(world.dso.agr_client(AGR), "send_flex_request", request)
        answer = await world.dso.inbox.get(su.FlexRequestResponse, same(conv))
    finally:
        world.net.trusted[(DSO, "DSO")] = known
    assert answer.flex_request_message_id == request.message_id
    assert (answer.sender_domain, answer.result) == (GRIDGATE, REJECTED)
    assert answer.rejection_reason.startswith("Recipient unreachable: agr refused the message")
    assert "HTTP 401" in answer.rejection_reason
    assert (DSO, GRIDGATE, "AGR") in world.net.verified
    await world.settle()
    assert world.agr.inbox.of(su.FlexRequest) == []  # its service refused it unopened
    (undelivered,) = await world.audit("message.undelivered")
    assert undelivered.message_id == request.message_id
    outcomes = {r.message_id: r.status for r in await world.outbox()}
    assert outcomes == {request.message_id: "failed", answer.message_id: "delivered"}


async def test_a_message_signed_with_a_key_gridgate_does_not_hold_is_refused_with_401(
    world: World,
) -> None:
    """UFTP 3 transport: "401: signature check failed"; nothing is forwarded."""
    impostor = ShapeshifterDsoAgrClient(
        sender_domain=DSO,
        signing_key=secret_b64(Ed25519PrivateKey.generate()),
        recipient_domain=AGR,
        recipient_endpoint=world.net.gateway_url,
    )
    request = flex_request(world.conversation)
    with pytest.raises(ClientTransportException) as refused:
        await send(impostor, "send_flex_request", request)
    assert refused.value.response.status_code == 401
    await world.settle()
    assert world.agr.inbox.of(su.FlexRequest) == []
    assert await audited(world, "message.accepted") == {}
