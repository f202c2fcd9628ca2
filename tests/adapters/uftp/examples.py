"""One realistic model message of every UFTP 3 message type, keyed by its element name.

The six flex messages come from `conftest.make_messages`; the others are written here with
every optional field filled where the standard has one, so that a round trip or a peer that
drops a field shows it.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

from gateway.model import (
    AGRPortfolioQuery,
    AGRPortfolioQueryResponse,
    AGRPortfolioUpdate,
    AGRPortfolioUpdateResponse,
    ContractSettlement,
    ContractSettlementIsp,
    ContractSettlementPeriod,
    Disposition,
    DPrognosis,
    DPrognosisResponse,
    DsoCongestionPointView,
    DSOPortfolioQuery,
    DSOPortfolioQueryResponse,
    DSOPortfolioUpdate,
    DSOPortfolioUpdateResponse,
    DsoView,
    FlexOfferRevocation,
    FlexOfferRevocationResponse,
    FlexOrderSettlement,
    FlexOrderSettlementStatus,
    FlexOrderStatus,
    FlexReservationUpdate,
    FlexReservationUpdateResponse,
    FlexSettlement,
    FlexSettlementResponse,
    Message,
    MessageKind,
    Metering,
    MeteringIsp,
    MeteringProfile,
    MeteringResponse,
    PortfolioCongestionPoint,
    PortfolioConnection,
    PowerIsp,
    QueriedConnection,
    RedispatchBy,
    Result,
    Role,
    SettlementIsp,
    TestMessage,
    TestMessageResponse,
)

from .conftest import (
    AGR,
    CONGESTION_POINT,
    DSO,
    OFFER_ID,
    ORDER_ID,
    PERIOD,
    envelope,
    flex_header,
    make_messages,
)

CRO = "cro.example.com"
EAN = "E8716859000126365"  # a Metering EAN: E and 16 digits in the 3.x XSD
HOUSE = "ean.871685900012636551"
SHOP = "ean.871685900012636568"
BATTERY = "ea1.2026-11.com.example.agr:battery-7"
ZONE = "Europe/Amsterdam"
ALL_KINDS = [kind.value for kind in MessageKind]


def uid(name: str) -> str:
    """A fixed MessageID per name (a version 5 UUID, as the UUIDType pattern allows)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://gridgate.example/test/{name}"))


PROGNOSIS_ID = uid("D-Prognosis")
SECOND_ORDER_ID = uid("FlexOrder-2")


def every_message(version: str = "3.1.0") -> dict[str, Message]:
    """One message of each of the 26 UFTP 3 message types."""
    messages = make_messages(version)

    def env(name: str, sender: str, recipient: str, role: Role) -> dict[str, object]:
        e = envelope(uid(name), sender=sender, recipient=recipient, role=role, version=version)
        return {"envelope": e}

    def answer(request: str, sender: str, recipient: str, role: Role) -> dict[str, object]:
        """A response's envelope and reference, Accepted unless the caller says otherwise."""
        return {
            **env(f"{request}Response", sender, recipient, role),
            "reference_message_id": uid(request),
            "result": Result.ACCEPTED,
        }

    def rejected(reason: str) -> dict[str, object]:
        return {"result": Result.REJECTED, "rejection_reason": reason}

    agr_dso = (AGR, DSO, Role.AGR)
    dso_agr = (DSO, AGR, Role.DSO)
    dso_cro = (DSO, CRO, Role.DSO)
    cro_dso = (CRO, DSO, Role.CRO)
    agr_cro = (AGR, CRO, Role.AGR)
    cro_agr = (CRO, AGR, Role.CRO)
    day = timedelta(days=1)

    messages["FlexOfferRevocation"] = FlexOfferRevocation(
        **env("FlexOfferRevocation", *agr_dso), flex_offer_message_id=OFFER_ID
    )
    messages["FlexOfferRevocationResponse"] = FlexOfferRevocationResponse(
        **{
            **answer("FlexOfferRevocation", *dso_agr),
            **rejected("Reference message already ordered: order-2026-0042"),
        }
    )
    messages["FlexReservationUpdate"] = FlexReservationUpdate(
        **env("FlexReservationUpdate", *dso_agr),
        **flex_header(),
        contract_id="contract-7",
        reference="reservation-2026-11-28",
        isps=(
            PowerIsp(start=1, power=200_000, duration=40),
            PowerIsp(start=41, power=50_000, duration=8),
            PowerIsp(start=49, power=200_000, duration=48),
        ),
    )
    messages["FlexReservationUpdateResponse"] = FlexReservationUpdateResponse(
        **answer("FlexReservationUpdate", *agr_dso)
    )
    messages["D-Prognosis"] = DPrognosis(
        envelope=envelope(PROGNOSIS_ID, sender=AGR, recipient=DSO, role=Role.AGR, version=version),
        **flex_header(),
        revision=4,
        isps=(
            *(PowerIsp(start=i, power=1_000 * i - 48_000) for i in range(1, 41)),
            PowerIsp(start=41, power=-150_000, duration=8),
            PowerIsp(start=49, power=12_000, duration=48),
        ),
    )
    messages["D-PrognosisResponse"] = DPrognosisResponse(
        **answer("D-Prognosis", *dso_agr),
        flex_order_statuses=(
            FlexOrderStatus(flex_order_message_id=ORDER_ID, is_validated=True),
            FlexOrderStatus(flex_order_message_id=SECOND_ORDER_ID, is_validated=False),
        ),
    )
    messages["FlexSettlement"] = FlexSettlement(
        **env("FlexSettlement", *dso_agr),
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        currency="EUR",
        order_settlements=(
            FlexOrderSettlement(
                order_reference="order-2026-0042",
                period=PERIOD,
                congestion_point=CONGESTION_POINT,
                price=Decimal("1234.5678"),
                net_settlement=Decimal("1134.5678"),
                penalty=Decimal("100.0000"),
                isps=(
                    SettlementIsp(
                        start=41,
                        duration=4,
                        baseline_power=10_000,
                        ordered_flex_power=-150_000,
                        actual_power=-140_000,
                        delivered_flex_power=-150_000,
                    ),
                    SettlementIsp(
                        start=45,
                        duration=4,
                        baseline_power=10_000,
                        ordered_flex_power=-150_000,
                        actual_power=-120_000,
                        delivered_flex_power=-130_000,
                        power_deficiency=20_000,
                    ),
                ),
                contract_id="contract-7",
                d_prognosis_message_id=PROGNOSIS_ID,
                baseline_reference="baseline-1",
            ),
            FlexOrderSettlement(
                order_reference=None,  # optional in the 3.x XSD
                period=PERIOD - day,
                congestion_point=CONGESTION_POINT,
                price=Decimal(0),
                net_settlement=Decimal(0),
                isps=(
                    SettlementIsp(
                        start=1,
                        baseline_power=0,
                        ordered_flex_power=0,
                        actual_power=0,
                        delivered_flex_power=0,
                    ),
                ),
            ),
        ),
        contract_settlements=(
            ContractSettlement(
                contract_id="contract-7",
                periods=(
                    ContractSettlementPeriod(
                        period=PERIOD,
                        isps=(
                            ContractSettlementIsp(start=1, reserved_power=200_000, duration=40),
                            ContractSettlementIsp(
                                start=41,
                                duration=8,
                                reserved_power=200_000,
                                requested_power=150_000,
                                available_power=250_000,
                                offered_power=150_000,
                                ordered_power=150_000,
                            ),
                        ),
                    ),
                    ContractSettlementPeriod(
                        period=PERIOD + day,
                        isps=(ContractSettlementIsp(start=1, reserved_power=0, duration=96),),
                    ),
                ),
            ),
        ),
    )
    messages["FlexSettlementResponse"] = FlexSettlementResponse(
        **answer("FlexSettlement", *agr_dso),
        statuses=(
            FlexOrderSettlementStatus(
                order_reference="order-2026-0042",
                disposition=Disposition.DISPUTED,
                dispute_reason="ISPs 45-48 were delivered in full",
            ),
            FlexOrderSettlementStatus(order_reference=None, disposition=Disposition.ACCEPTED),
        ),
    )
    messages["Metering"] = Metering(
        **env("Metering", *agr_dso),
        revision=2,
        isp_duration=timedelta(minutes=15),
        time_zone=ZONE,
        period=PERIOD,
        ean=EAN,
        currency="EUR",
        profiles=(
            MeteringProfile(
                profile_type="Power",
                unit="kW",
                isps=tuple(MeteringIsp(start=i, value=Decimal(i) / 4 - 10) for i in range(1, 97)),
            ),
            MeteringProfile(
                profile_type="ImportMeterReading",
                unit="kWh",
                isps=(
                    MeteringIsp(start=1, value=Decimal("123456.789")),
                    MeteringIsp(start=2, value=Decimal("123457.001")),
                ),
            ),
        ),
    )
    messages["MeteringResponse"] = MeteringResponse(**answer("Metering", *dso_agr))
    messages["DSOPortfolioUpdate"] = DSOPortfolioUpdate(
        **env("DSOPortfolioUpdate", *dso_cro),
        time_zone=ZONE,
        congestion_points=(
            PortfolioCongestionPoint(
                entity_address=CONGESTION_POINT,
                start_period=date(2026, 12, 1),
                end_period=date(2027, 12, 31),
                mutex_offers_supported=True,
                day_ahead_redispatch_by=RedispatchBy.DSO,
                intraday_redispatch_by=RedispatchBy.AGR,
                connections=(
                    PortfolioConnection(entity_address=HOUSE, start_period=date(2026, 12, 1)),
                    PortfolioConnection(
                        entity_address=SHOP,
                        start_period=date(2026, 12, 1),
                        end_period=date(2027, 6, 30),
                    ),
                ),
            ),
        ),
    )
    messages["DSOPortfolioUpdateResponse"] = DSOPortfolioUpdateResponse(
        **answer("DSOPortfolioUpdate", *cro_dso)
    )
    messages["DSOPortfolioQuery"] = DSOPortfolioQuery(
        **env("DSOPortfolioQuery", *dso_cro),
        time_zone=ZONE,
        period=PERIOD,
        entity_address=CONGESTION_POINT,
    )
    messages["DSOPortfolioQueryResponse"] = DSOPortfolioQueryResponse(
        **answer("DSOPortfolioQuery", *cro_dso),
        time_zone=ZONE,
        period=PERIOD,
        congestion_point=CONGESTION_POINT,
        connections=(
            QueriedConnection(entity_address=HOUSE, agr_domain=AGR),
            QueriedConnection(entity_address=SHOP),
        ),
    )
    messages["AGRPortfolioUpdate"] = AGRPortfolioUpdate(
        **env("AGRPortfolioUpdate", *agr_cro),
        time_zone=ZONE,
        connections=(
            PortfolioConnection(entity_address=HOUSE, start_period=date(2026, 12, 1)),
            PortfolioConnection(
                entity_address=BATTERY,
                start_period=date(2026, 12, 1),
                end_period=date(2026, 12, 31),
            ),
        ),
    )
    messages["AGRPortfolioUpdateResponse"] = AGRPortfolioUpdateResponse(
        **{**answer("AGRPortfolioUpdate", *cro_agr), **rejected("Invalid Message: unknown EAN")}
    )
    messages["AGRPortfolioQuery"] = AGRPortfolioQuery(
        **env("AGRPortfolioQuery", *agr_cro), time_zone=ZONE, period=PERIOD
    )
    messages["AGRPortfolioQueryResponse"] = AGRPortfolioQueryResponse(
        **answer("AGRPortfolioQuery", *cro_agr),
        time_zone=ZONE,
        period=PERIOD,
        views=(
            DsoView(
                portfolios=(
                    (
                        DSO,
                        (
                            DsoCongestionPointView(
                                entity_address=CONGESTION_POINT,
                                mutex_offers_supported=True,
                                day_ahead_redispatch_by=RedispatchBy.DSO,
                                intraday_redispatch_by=RedispatchBy.AGR,
                                connections=(HOUSE,),
                            ),
                            DsoCongestionPointView(
                                entity_address="ean.871685900012636575",
                                mutex_offers_supported=False,
                                day_ahead_redispatch_by=RedispatchBy.AGR,
                                connections=(SHOP,),
                            ),
                        ),
                    ),
                ),
                connections=(BATTERY,),
            ),
        ),
    )
    messages["TestMessage"] = TestMessage(**env("TestMessage", *dso_agr))
    messages["TestMessageResponse"] = TestMessageResponse(**env("TestMessageResponse", *agr_dso))
    assert sorted(messages) == sorted(ALL_KINDS)
    return messages
