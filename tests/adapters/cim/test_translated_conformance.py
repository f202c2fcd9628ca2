"""Conformance of what the translation writes: the documents gridgate builds from UFTP
messages (a bid from an offer, its availability, the A41 response, the selection result to
an ISO) are valid against the official XSD of their version, in every version they come in.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from adapters.cim.documents import CodedId
from adapters.cim.emit import emit
from adapters.cim.translate import (
    Congested,
    activation_response,
    bid_availability,
    offer_bid,
    selection_result,
)
from gateway.config import PartyCode
from gateway.model import Envelope, FlexOffer, FlexOrder, OfferOption, PowerIsp, Result, Role

from .examples import activation, reserve_need
from .official import official

ME = PartyCode(coding_scheme="A01", code="10XGRIDGATE---7K")
NOW = datetime(2026, 11, 27, 9, 30, 12, tzinfo=UTC)
DAY = date(2026, 11, 28)


def envelope(sender: str, recipient: str, role: Role) -> Envelope:
    return Envelope(
        message_id=str(uuid.uuid4()),
        conversation_id=str(uuid.uuid4()),
        sender_domain=sender,
        recipient_domain=recipient,
        sender_role=role,
        timestamp=NOW,
    )


def offer() -> FlexOffer:
    """Two options: one upward, one with both directions (two bids)."""
    return FlexOffer(
        envelope=envelope("agr.example.com", "gridgate.example.com", Role.AGR),
        isp_duration=timedelta(minutes=15),
        time_zone="Europe/Oslo",
        period=DAY,
        congestion_point="ean.871685900012636543",
        expiration=NOW + timedelta(hours=1),
        currency="NOK",
        flex_request_message_id=str(uuid.uuid4()),
        options=(
            OfferOption("A", Decimal("120.50"), (PowerIsp(33, -200_000, 4),)),
            OfferOption("B", Decimal("80"), (PowerIsp(33, -100_000, 2), PowerIsp(35, 50_000, 2))),
        ),
    )


def check(cim_specs: Path, root: str, version: str, written: bytes) -> None:
    schema = official(cim_specs, root, version)
    assert schema.validate(etree.fromstring(written)), (
        f"{schema.error_log.last_error}\n{written.decode()[:3000]}"
    )


@pytest.mark.parametrize("version", ["7.2", "7.4", "7.6"])
def test_a_bid_and_its_availability_are_valid(cim_specs: Path, version: str) -> None:
    need = reserve_need(version)
    bid = offer_bid(
        offer(), need, need.bid_time_series[0].mrid, ME, NOW, CodedId("NOKG90901", "NNO")
    )
    assert len(bid.bid_time_series) == 3  # option A up; option B up and down
    check(cim_specs, "ReserveBid_MarketDocument", version, emit(bid))
    congested = [Congested(bid.bid_time_series[0].mrid, 150_000, "ISP 34: over the limit", None)]
    availability = bid_availability(bid, congested, ME, NOW)
    check(cim_specs, "BidAvailability_MarketDocument", "1.1", emit(availability))


@pytest.mark.parametrize("version", ["6.2", "6.4"])
@pytest.mark.parametrize("result", [Result.ACCEPTED, Result.REJECTED])
def test_an_a41_response_is_valid(cim_specs: Path, version: str, result: Result) -> None:
    order = activation(version, "A40")
    response = activation_response(
        order, order.time_series[0].mrid, result, "battery offline", ME, NOW
    )
    check(cim_specs, "Activation_MarketDocument", version, emit(response))


def test_a_selection_result_is_valid(cim_specs: Path) -> None:
    order = FlexOrder(
        envelope=envelope("dso.example.com", "agr.example.com", Role.DSO),
        isp_duration=timedelta(minutes=15),
        time_zone="Europe/Oslo",
        period=DAY,
        congestion_point="ean.871685900012636543",
        isps=(PowerIsp(40, -100_000, 2), PowerIsp(42, 50_000)),
        price=Decimal("25.00"),
        currency="NOK",
        order_reference="dso-order-1",
        unsolicited=True,
    )
    for provider, resource in ((None, None), (CodedId("9999909919920", "A10"), None)):
        result = selection_result(
            order,
            "10YNO-2--------T",
            ME,
            CodedId("10X1001A1001A38Y", "A01"),
            provider,
            resource or CodedId("NOKG90901", "NNO"),
            NOW,
        )
        check(cim_specs, "ReserveAllocationResult_MarketDocument", "6.5", emit(result))
    up_only = replace(order, isps=(PowerIsp(40, -100_000),))
    result = selection_result(
        up_only, "10YNO-2--------T", ME, CodedId("10X1001A1001A38Y", "A01"), None, None, NOW
    )
    assert [s.direction for s in result.time_series] == ["A01"]
    check(cim_specs, "ReserveAllocationResult_MarketDocument", "6.5", emit(result))
