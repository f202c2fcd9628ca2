"""Fixtures for the UFTP adapter tests: sample files and one model message of each type."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.model import (
    Envelope,
    FlexOffer,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    FlexRequestResponse,
    Message,
    OfferOption,
    PowerIsp,
    RequestIsp,
    Result,
    Role,
)

DSO = "dso.example.com"
AGR = "agr.example.com"
CONGESTION_POINT = "ean.871685900012636543"
PERIOD = date(2026, 11, 28)
REQUEST_ID = "0b7e7c42-8f2e-4a8c-9c5e-0d2f6b1a9e01"
OFFER_ID = "1c8f8d53-9f3f-4b9d-8d6f-1e3a7c2b0f12"
ORDER_ID = "2d9a9e64-a04a-4cae-9e7a-2f4b8d3c1a23"
CONVERSATION_ID = "3eab0f75-b15b-4dbf-af8b-3a5c9e4d2b34"


@pytest.fixture(scope="session")
def samples(specs: Path) -> Path:
    """The Java reference library's test resources (see samples/SOURCE.md)."""
    return specs / "uftp" / "samples" / "shapeshifter-library-java"


def envelope(
    message_id: str,
    *,
    sender: str,
    recipient: str,
    role: Role,
    version: str = "3.1.0",
    at: datetime = datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC),
) -> Envelope:
    return Envelope(
        message_id=message_id,
        conversation_id=CONVERSATION_ID,
        sender_domain=sender,
        recipient_domain=recipient,
        sender_role=role,
        timestamp=at,
        version=version,
    )


def flex_header() -> dict[str, object]:
    return {
        "isp_duration": timedelta(minutes=15),
        "time_zone": "Europe/Amsterdam",
        "period": PERIOD,
        "congestion_point": CONGESTION_POINT,
    }


def make_messages(version: str = "3.1.0") -> dict[str, Message]:
    """One fully populated message of each of the six flex types."""
    dso = {"sender": DSO, "recipient": AGR, "role": Role.DSO, "version": version}
    agr = {"sender": AGR, "recipient": DSO, "role": Role.AGR, "version": version}
    expires = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)
    request = FlexRequest(
        envelope=envelope(REQUEST_ID, **dso),
        **flex_header(),
        revision=3,
        expiration=expires,
        isps=(
            RequestIsp(start=1, min_power=0, max_power=0, duration=40, disposition="Available"),
            RequestIsp(
                start=41,
                min_power=-250_000,
                max_power=-100_000,
                duration=8,
                disposition="Requested",
            ),
            RequestIsp(start=49, min_power=0, max_power=0, duration=48),
        ),
        contract_id="contract-7",
        service_type="congestion-management",
    )
    offer = FlexOffer(
        envelope=envelope(OFFER_ID, **agr),
        **flex_header(),
        expiration=expires,
        currency="EUR",
        options=(
            OfferOption(
                reference="option-a",
                price=Decimal("1234.5678"),
                isps=(PowerIsp(start=41, power=-150_000, duration=8),),
                min_activation_factor=Decimal("0.50"),
            ),
            OfferOption(
                reference="option-b",
                price=Decimal("99"),
                isps=tuple(PowerIsp(start=i, power=-100_000) for i in range(41, 49)),
            ),
        ),
        flex_request_message_id=REQUEST_ID,
        unsolicited=False,
        contract_id="contract-7",
        d_prognosis_message_id="4fbc1086-c26c-4ec0-b09c-4b6d0f5e3c45",
        baseline_reference="baseline-1",
    )
    order = FlexOrder(
        envelope=envelope(ORDER_ID, **dso),
        **flex_header(),
        isps=tuple(PowerIsp(start=i, power=-150_000) for i in range(41, 49)),
        price=Decimal("1234.5678"),
        currency="EUR",
        order_reference="order-2026-0042",
        flex_offer_message_id=OFFER_ID,
        unsolicited=False,
        option_reference="option-a",
        activation_factor=Decimal("0.75"),
        contract_id="contract-7",
        service_type="congestion-management",
        d_prognosis_message_id="4fbc1086-c26c-4ec0-b09c-4b6d0f5e3c45",
        baseline_reference="baseline-1",
    )
    answer = "5acd2197-d37d-4fd1-81ad-5c7e1a6f4d56"
    return {
        "FlexRequest": request,
        "FlexOffer": offer,
        "FlexOrder": order,
        "FlexRequestResponse": FlexRequestResponse(
            envelope=envelope(answer, **agr),
            reference_message_id=REQUEST_ID,
            result=Result.ACCEPTED,
        ),
        "FlexOfferResponse": FlexOfferResponse(
            envelope=envelope(answer, **dso),
            reference_message_id=OFFER_ID,
            result=Result.REJECTED,
            rejection_reason="ISPs out of bounds: ISP 97 > 96",
        ),
        "FlexOrderResponse": FlexOrderResponse(
            envelope=envelope(answer, **agr),
            reference_message_id=ORDER_ID,
            result=Result.ACCEPTED,
        ),
    }


@pytest.fixture
def messages() -> dict[str, Message]:
    return make_messages()
