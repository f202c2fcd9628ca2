"""Interop with shapeshifter-uftp (PyPI), the independent Python implementation of UFTP 3.

Both directions, the whole wire form, every one of the 26 message types: its xsdata
dataclasses serialised, sealed with `crypto_sign` and wrapped in its SignedMessage are opened
and decoded by gridgate into exactly the model message of `examples.every_message`; what
gridgate encodes, signs and wraps from that model message is parsed and unsealed by its
transport into exactly the peer's message written out here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from shapeshifter_uftp import transport as peer
from shapeshifter_uftp import uftp as su
from xsdata.models.datatype import XmlDate, XmlDuration

from adapters.uftp import codec, signing
from gateway.model import Message, Role, TestMessageResponse

from .conftest import CONGESTION_POINT, CONVERSATION_ID, OFFER_ID, ORDER_ID, REQUEST_ID
from .examples import (
    ALL_KINDS,
    BATTERY,
    EAN,
    HOUSE,
    PROGNOSIS_ID,
    SECOND_ORDER_ID,
    SHOP,
    every_message,
    uid,
)

STAMP = "2026-11-27T10:00:00.123Z"  # the examples' TimeStamp, as gridgate writes it
EXPIRES = "2026-11-27T16:30:00.000Z"
PERIOD = XmlDate(2026, 11, 28)
FIRST = XmlDate(2026, 12, 1)
ACCEPTED = su.AcceptedRejected.ACCEPTED
REJECTED = su.AcceptedRejected.REJECTED


def header(message: Message) -> dict[str, object]:
    """The payload header of the peer's message, from the example's envelope."""
    e = message.envelope
    return {
        "version": e.version,
        "sender_domain": e.sender_domain,
        "recipient_domain": e.recipient_domain,
        "time_stamp": STAMP,
        "message_id": e.message_id,
        "conversation_id": CONVERSATION_ID,
    }


FLEX = {
    "isp_duration": XmlDuration("PT15M"),
    "time_zone": "Europe/Amsterdam",
    "period": PERIOD,
    "congestion_point": CONGESTION_POINT,
}


def peer_messages() -> dict[str, object]:
    """The peer's rendering of every message of `every_message()`, field by field."""
    ours = every_message()

    def h(name: str) -> dict[str, object]:
        return header(ours[name])

    def f(name: str) -> dict[str, object]:
        return {**header(ours[name]), **FLEX}

    messages: dict[str, object] = {
        "FlexRequest": su.FlexRequest(
            **f("FlexRequest"),
            isps=[
                su.FlexRequestISP(
                    disposition=su.AvailableRequested.AVAILABLE,
                    min_power=0,
                    max_power=0,
                    start=1,
                    duration=40,
                ),
                su.FlexRequestISP(
                    disposition=su.AvailableRequested.REQUESTED,
                    min_power=-250_000,
                    max_power=-100_000,
                    start=41,
                    duration=8,
                ),
                su.FlexRequestISP(min_power=0, max_power=0, start=49, duration=48),
            ],
            revision=3,
            expiration_date_time=EXPIRES,
            contract_id="contract-7",
            service_type="congestion-management",
        ),
        "FlexOffer": su.FlexOffer(
            **f("FlexOffer"),
            offer_options=[
                su.FlexOfferOption(
                    isps=[su.FlexOfferOptionISP(power=-150_000, start=41, duration=8)],
                    option_reference="option-a",
                    price=Decimal("1234.5678"),
                    min_activation_factor=Decimal("0.50"),
                ),
                su.FlexOfferOption(
                    isps=[su.FlexOfferOptionISP(power=-100_000, start=i) for i in range(41, 49)],
                    option_reference="option-b",
                    price=Decimal(99),
                ),
            ],
            expiration_date_time=EXPIRES,
            unsolicited=False,
            flex_request_message_id=REQUEST_ID,
            contract_id="contract-7",
            d_prognosis_message_id="4fbc1086-c26c-4ec0-b09c-4b6d0f5e3c45",
            baseline_reference="baseline-1",
            currency="EUR",
        ),
        "FlexOrder": su.FlexOrder(
            **f("FlexOrder"),
            isps=[su.FlexOrderISP(power=-150_000, start=i) for i in range(41, 49)],
            unsolicited=False,
            service_type="congestion-management",
            flex_offer_message_id=OFFER_ID,
            contract_id="contract-7",
            d_prognosis_message_id="4fbc1086-c26c-4ec0-b09c-4b6d0f5e3c45",
            baseline_reference="baseline-1",
            price=Decimal("1234.5678"),
            currency="EUR",
            order_reference="order-2026-0042",
            option_reference="option-a",
            activation_factor=Decimal("0.75"),
        ),
        "FlexRequestResponse": su.FlexRequestResponse(
            **h("FlexRequestResponse"), flex_request_message_id=REQUEST_ID
        ),
        "FlexOfferResponse": su.FlexOfferResponse(
            **h("FlexOfferResponse"),
            result=REJECTED,
            rejection_reason="ISPs out of bounds: ISP 97 > 96",
            flex_offer_message_id=OFFER_ID,
        ),
        "FlexOrderResponse": su.FlexOrderResponse(
            **h("FlexOrderResponse"), flex_order_message_id=ORDER_ID
        ),
        "FlexOfferRevocation": su.FlexOfferRevocation(
            **h("FlexOfferRevocation"), flex_offer_message_id=OFFER_ID
        ),
        "FlexOfferRevocationResponse": su.FlexOfferRevocationResponse(
            **h("FlexOfferRevocationResponse"),
            result=REJECTED,
            rejection_reason="Reference message already ordered: order-2026-0042",
            flex_offer_revocation_message_id=uid("FlexOfferRevocation"),
        ),
        "FlexReservationUpdate": su.FlexReservationUpdate(
            **f("FlexReservationUpdate"),
            isps=[
                su.FlexReservationUpdateISP(power=200_000, start=1, duration=40),
                su.FlexReservationUpdateISP(power=50_000, start=41, duration=8),
                su.FlexReservationUpdateISP(power=200_000, start=49, duration=48),
            ],
            contract_id="contract-7",
            reference="reservation-2026-11-28",
        ),
        "FlexReservationUpdateResponse": su.FlexReservationUpdateResponse(
            **h("FlexReservationUpdateResponse"),
            flex_reservation_update_message_id=uid("FlexReservationUpdate"),
        ),
        "D-Prognosis": su.DPrognosis(
            **f("D-Prognosis"),
            isps=[
                *(su.DPrognosisISP(power=1_000 * i - 48_000, start=i) for i in range(1, 41)),
                su.DPrognosisISP(power=-150_000, start=41, duration=8),
                su.DPrognosisISP(power=12_000, start=49, duration=48),
            ],
            revision=4,
        ),
        "D-PrognosisResponse": su.DPrognosisResponse(
            **h("D-PrognosisResponse"),
            d_prognosis_message_id=PROGNOSIS_ID,
            flex_order_statuses=[
                su.FlexOrderStatus(flex_order_message_id=ORDER_ID, is_validated=True),
                su.FlexOrderStatus(flex_order_message_id=SECOND_ORDER_ID, is_validated=False),
            ],
        ),
        "FlexSettlement": su.FlexSettlement(
            **h("FlexSettlement"),
            flex_order_settlements=[
                su.FlexOrderSettlement(
                    isps=[
                        su.FlexOrderSettlementISP(
                            start=41,
                            duration=4,
                            baseline_power=10_000,
                            ordered_flex_power=-150_000,
                            actual_power=-140_000,
                            delivered_flex_power=-150_000,
                        ),
                        su.FlexOrderSettlementISP(
                            start=45,
                            duration=4,
                            baseline_power=10_000,
                            ordered_flex_power=-150_000,
                            actual_power=-120_000,
                            delivered_flex_power=-130_000,
                            power_deficiency=20_000,
                        ),
                    ],
                    order_reference="order-2026-0042",
                    period=PERIOD,
                    contract_id="contract-7",
                    d_prognosis_message_id=PROGNOSIS_ID,
                    baseline_reference="baseline-1",
                    congestion_point=CONGESTION_POINT,
                    price=Decimal("1234.5678"),
                    penalty=Decimal(100),
                    net_settlement=Decimal("1134.5678"),
                ),
                su.FlexOrderSettlement(
                    isps=[
                        su.FlexOrderSettlementISP(
                            start=1,
                            baseline_power=0,
                            ordered_flex_power=0,
                            actual_power=0,
                            delivered_flex_power=0,
                        )
                    ],
                    period=XmlDate(2026, 11, 27),
                    congestion_point=CONGESTION_POINT,
                    price=Decimal(0),
                    net_settlement=Decimal(0),
                ),
            ],
            contract_settlements=[
                su.ContractSettlement(
                    periods=[
                        su.ContractSettlementPeriod(
                            isps=[
                                su.ContractSettlementISP(
                                    start=1, duration=40, reserved_power=200_000
                                ),
                                su.ContractSettlementISP(
                                    start=41,
                                    duration=8,
                                    reserved_power=200_000,
                                    requested_power=150_000,
                                    available_power=250_000,
                                    offered_power=150_000,
                                    ordered_power=150_000,
                                ),
                            ],
                            period=PERIOD,
                        ),
                        su.ContractSettlementPeriod(
                            isps=[su.ContractSettlementISP(start=1, duration=96, reserved_power=0)],
                            period=XmlDate(2026, 11, 29),
                        ),
                    ],
                    contract_id="contract-7",
                )
            ],
            period_start=XmlDate(2026, 11, 1),
            period_end=XmlDate(2026, 11, 30),
            currency="EUR",
        ),
        "FlexSettlementResponse": su.FlexSettlementResponse(
            **h("FlexSettlementResponse"),
            flex_settlement_message_id=uid("FlexSettlement"),
            flex_order_settlement_statuses=[
                su.FlexOrderSettlementStatus(
                    order_reference="order-2026-0042",
                    disposition=su.AcceptedDisputed.DISPUTED,
                    dispute_reason="ISPs 45-48 were delivered in full",
                ),
                su.FlexOrderSettlementStatus(disposition=su.AcceptedDisputed.ACCEPTED),
            ],
        ),
        "Metering": su.Metering(
            **h("Metering"),
            profiles=[
                su.MeteringProfile(
                    isps=[su.MeteringISP(start=i, value=Decimal(i) / 4 - 10) for i in range(1, 97)],
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
            revision=2,
            isp_duration=XmlDuration("PT15M"),
            time_zone="Europe/Amsterdam",
            currency="EUR",
            period=PERIOD,
            ean=EAN,
        ),
        "MeteringResponse": su.MeteringResponse(
            **h("MeteringResponse"), metering_message_id=uid("Metering")
        ),
        "DSOPortfolioUpdate": su.DsoPortfolioUpdate(
            **h("DSOPortfolioUpdate"),
            congestion_points=[
                su.DsoPortfolioUpdateCongestionPoint(
                    connections=[
                        su.DsoPortfolioUpdateConnection(entity_address=HOUSE, start_period=FIRST),
                        su.DsoPortfolioUpdateConnection(
                            entity_address=SHOP,
                            start_period=FIRST,
                            end_period=XmlDate(2027, 6, 30),
                        ),
                    ],
                    entity_address=CONGESTION_POINT,
                    start_period=FIRST,
                    end_period=XmlDate(2027, 12, 31),
                    mutex_offers_supported=True,
                    day_ahead_redispatch_by=su.RedispatchBy.DSO,
                    intraday_redispatch_by=su.RedispatchBy.AGR,
                )
            ],
            time_zone="Europe/Amsterdam",
        ),
        "DSOPortfolioUpdateResponse": su.DsoPortfolioUpdateResponse(
            **h("DSOPortfolioUpdateResponse"),
            dso_portfolio_update_message_id=uid("DSOPortfolioUpdate"),
        ),
        "DSOPortfolioQuery": su.DsoPortfolioQuery(
            **h("DSOPortfolioQuery"),
            time_zone="Europe/Amsterdam",
            period=PERIOD,
            entity_address=CONGESTION_POINT,
        ),
        "DSOPortfolioQueryResponse": su.DsoPortfolioQueryResponse(
            **h("DSOPortfolioQueryResponse"),
            dso_portfolio_query_message_id=uid("DSOPortfolioQuery"),
            congestion_point=su.DsoPortfolioQueryCongestionPoint(
                connections=[
                    su.DsoPortfolioQueryConnection(
                        entity_address=HOUSE, agr_domain="agr.example.com"
                    ),
                    su.DsoPortfolioQueryConnection(entity_address=SHOP),
                ],
                entity_address=CONGESTION_POINT,
            ),
            time_zone="Europe/Amsterdam",
            period=PERIOD,
        ),
        "AGRPortfolioUpdate": su.AgrPortfolioUpdate(
            **h("AGRPortfolioUpdate"),
            connections=[
                su.AgrPortfolioUpdateConnection(entity_address=HOUSE, start_period=FIRST),
                su.AgrPortfolioUpdateConnection(
                    entity_address=BATTERY, start_period=FIRST, end_period=XmlDate(2026, 12, 31)
                ),
            ],
            time_zone="Europe/Amsterdam",
        ),
        "AGRPortfolioUpdateResponse": su.AgrPortfolioUpdateResponse(
            **h("AGRPortfolioUpdateResponse"),
            result=REJECTED,
            rejection_reason="Invalid Message: unknown EAN",
            agr_portfolio_update_message_id=uid("AGRPortfolioUpdate"),
        ),
        "AGRPortfolioQuery": su.AgrPortfolioQuery(
            **h("AGRPortfolioQuery"), time_zone="Europe/Amsterdam", period=PERIOD
        ),
        "AGRPortfolioQueryResponse": su.AgrPortfolioQueryResponse(
            **h("AGRPortfolioQueryResponse"),
            agr_portfolio_query_message_id=uid("AGRPortfolioQuery"),
            dso_views=[
                su.AgrPortfolioQueryResponseDSOView(
                    dso_portfolios=[
                        su.AgrPortfolioQueryResponseDSOPortfolio(
                            congestion_points=[
                                su.AgrPortfolioQueryResponseCongestionPoint(
                                    connections=[
                                        su.AgrPortfolioQueryResponseConnection(entity_address=HOUSE)
                                    ],
                                    entity_address=CONGESTION_POINT,
                                    mutex_offers_supported=True,
                                    day_ahead_redispatch_by=su.RedispatchBy.DSO,
                                    intraday_redispatch_by=su.RedispatchBy.AGR,
                                ),
                                su.AgrPortfolioQueryResponseCongestionPoint(
                                    connections=[
                                        su.AgrPortfolioQueryResponseConnection(entity_address=SHOP)
                                    ],
                                    entity_address="ean.871685900012636575",
                                    mutex_offers_supported=False,
                                    day_ahead_redispatch_by=su.RedispatchBy.AGR,
                                ),
                            ],
                            dso_domain="dso.example.com",
                        )
                    ],
                    connections=[su.AgrPortfolioQueryResponseConnection(entity_address=BATTERY)],
                )
            ],
            time_zone="Europe/Amsterdam",
            period=PERIOD,
        ),
        "TestMessage": su.TestMessage(**h("TestMessage")),
        # shapeshifter-uftp adds Result="Accepted", which the 3.x XSD does not have (SPEC #55)
        "TestMessageResponse": su.TestMessageResponse(**h("TestMessageResponse")),
    }
    assert sorted(messages) == sorted(ALL_KINDS)
    return messages


def peer_wire(message: object, role: Role, secret_b64: str) -> bytes:
    """What a shapeshifter-uftp client POSTs: its SignedMessage around its sealed message."""
    sealed = peer.seal_message(message, secret_b64)  # type: ignore[arg-type]
    envelope = su.SignedMessage(
        sender_domain=message.sender_domain,  # type: ignore[attr-defined]
        sender_role=su.UsefRole(role.value),
        body=sealed,
    )
    return peer.to_xml(envelope).encode("utf-8")


def receive(raw: bytes, public: object) -> Message:
    envelope = codec.parse_signed_message(raw)
    inner = signing.open_signed(envelope.body, [public])  # type: ignore[list-item]
    return codec.decode(inner, raw_digest="", sender_role=envelope.sender_role)


@pytest.mark.parametrize("name", ALL_KINDS)
def test_gridgate_decodes_what_shapeshifter_uftp_sends(name: str) -> None:
    key, public = signing.generate_key_pair()
    expected = every_message()[name]
    role = expected.envelope.sender_role
    received = receive(peer_wire(peer_messages()[name], role, signing.private_key_b64(key)), public)
    assert received == expected


@pytest.mark.parametrize("name", ALL_KINDS)
def test_shapeshifter_uftp_reads_what_gridgate_sends(name: str) -> None:
    key, public = signing.generate_key_pair()
    message = every_message()[name]
    raw = codec.render_signed_message(
        message.envelope.sender_domain,
        message.envelope.sender_role,
        signing.sign(codec.encode(message), key),
    )
    envelope = peer.from_xml(raw)
    assert isinstance(envelope, su.SignedMessage)
    assert envelope.sender_domain == message.envelope.sender_domain
    assert envelope.sender_role == message.envelope.sender_role.value
    unsealed = peer.unseal_message(envelope.body, signing.public_key_b64(public))
    assert unsealed == peer_messages()[name]


def test_the_peers_test_message_response_with_a_result_is_accepted() -> None:
    """shapeshifter-uftp writes Result on a TestMessageResponse, which 3.x leaves out (SPEC
    #55): gridgate's schema lets it by (a documented leniency) and the model drops it."""
    message = su.TestMessageResponse(
        **header(every_message()["TestMessageResponse"]),
        result=REJECTED,
        rejection_reason="not today",
    )
    xml = peer.to_xml(message).encode()
    assert b'Result="Rejected"' in xml
    decoded = codec.decode(xml, raw_digest="", sender_role=Role.AGR)
    assert isinstance(decoded, TestMessageResponse)
    assert decoded == every_message()["TestMessageResponse"]


def test_gridgate_reads_the_peers_other_timestamp_forms() -> None:
    """The peer writes offsets other than Z and six-digit fractions (pitfall 2)."""
    message = su.TestMessage(
        **{
            **header(every_message()["TestMessage"]),
            "time_stamp": "2026-11-27T11:00:00.250000+01:00",
        }
    )
    decoded = codec.decode(peer.to_xml(message).encode(), raw_digest="", sender_role=Role.DSO)
    assert decoded.envelope.timestamp == datetime(2026, 11, 27, 10, 0, 0, 250000, tzinfo=UTC)
