"""Interop with shapeshifter-uftp (PyPI), the independent Python implementation of UFTP 3.

Both directions, the whole wire form: its xsdata dataclasses serialised, sealed with
`crypto_sign` and wrapped in its SignedMessage are opened and decoded by gridgate; what
gridgate encodes, signs and wraps is parsed and unsealed by its transport.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from shapeshifter_uftp import transport as peer
from shapeshifter_uftp import uftp as su
from xsdata.models.datatype import XmlDate, XmlDuration

from adapters.uftp import codec, signing
from gateway.model import (
    FlexOffer,
    FlexOfferResponse,
    FlexOrder,
    FlexOrderResponse,
    FlexRequest,
    FlexRequestResponse,
    Message,
    PowerIsp,
    RequestIsp,
    Result,
    Role,
)

from .conftest import (
    AGR,
    CONGESTION_POINT,
    CONVERSATION_ID,
    DSO,
    OFFER_ID,
    ORDER_ID,
    REQUEST_ID,
    make_messages,
)

ANSWER_ID = "6bde32a8-e48e-4fe2-92be-6d8f2b7a5e67"
STAMP = "2026-11-27T10:00:00.250000+00:00"


def flex_kwargs(sender: str, recipient: str, message_id: str) -> dict[str, object]:
    return {
        "sender_domain": sender,
        "recipient_domain": recipient,
        "time_stamp": STAMP,
        "message_id": message_id,
        "conversation_id": CONVERSATION_ID,
        "isp_duration": XmlDuration("PT15M"),
        "time_zone": "Europe/Amsterdam",
        "period": XmlDate(2026, 11, 28),
        "congestion_point": CONGESTION_POINT,
    }


def header(sender: str, recipient: str, message_id: str) -> dict[str, object]:
    return {
        "sender_domain": sender,
        "recipient_domain": recipient,
        "time_stamp": STAMP,
        "message_id": message_id,
        "conversation_id": CONVERSATION_ID,
    }


def peer_messages() -> dict[str, tuple[object, Role]]:
    """One shapeshifter-uftp message of each of the six flex types, and its sender role."""
    return {
        "FlexRequest": (
            su.FlexRequest(
                **flex_kwargs(DSO, AGR, REQUEST_ID),
                isps=[
                    su.FlexRequestISP(
                        disposition=su.AvailableRequested.REQUESTED,
                        min_power=-200_000,
                        max_power=-100_000,
                        start=41,
                        duration=8,
                    ),
                    su.FlexRequestISP(min_power=0, max_power=0, start=49),
                ],
                revision=2,
                expiration_date_time="2026-11-27T16:30:00+00:00",
                contract_id="contract-7",
            ),
            Role.DSO,
        ),
        "FlexOffer": (
            su.FlexOffer(
                **flex_kwargs(AGR, DSO, OFFER_ID),
                offer_options=[
                    su.FlexOfferOption(
                        isps=[su.FlexOfferOptionISP(power=-150_000, start=41, duration=8)],
                        option_reference="option-a",
                        price=Decimal("12.5"),
                        min_activation_factor=Decimal("0.5"),
                    )
                ],
                expiration_date_time="2026-11-27T16:30:00+01:00",
                flex_request_message_id=REQUEST_ID,
                currency="EUR",
            ),
            Role.AGR,
        ),
        "FlexOrder": (
            su.FlexOrder(
                **flex_kwargs(DSO, AGR, ORDER_ID),
                isps=[su.FlexOrderISP(power=-150_000, start=i) for i in range(41, 49)],
                flex_offer_message_id=OFFER_ID,
                price=Decimal("12.5"),
                currency="EUR",
                order_reference="order-1",
                option_reference="option-a",
                activation_factor=Decimal("0.8"),
            ),
            Role.DSO,
        ),
        "FlexRequestResponse": (
            su.FlexRequestResponse(
                **header(AGR, DSO, ANSWER_ID), flex_request_message_id=REQUEST_ID
            ),
            Role.AGR,
        ),
        "FlexOfferResponse": (
            su.FlexOfferResponse(
                **header(DSO, AGR, ANSWER_ID),
                flex_offer_message_id=OFFER_ID,
                result=su.AcceptedRejected.REJECTED,
                rejection_reason="Period out of bounds",
            ),
            Role.DSO,
        ),
        "FlexOrderResponse": (
            su.FlexOrderResponse(**header(AGR, DSO, ANSWER_ID), flex_order_message_id=ORDER_ID),
            Role.AGR,
        ),
    }


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


@pytest.mark.parametrize("name", list(peer_messages()))
def test_gridgate_decodes_what_shapeshifter_uftp_sends(name: str) -> None:
    key, public = signing.generate_key_pair()
    message, role = peer_messages()[name]
    received = receive(peer_wire(message, role, signing.private_key_b64(key)), public)
    assert received.kind.value == name
    assert received.envelope.sender_role is role
    assert received.envelope.version == "3.1.0"
    assert received.envelope.conversation_id == CONVERSATION_ID
    assert received.envelope.timestamp == datetime(2026, 11, 27, 10, 0, 0, 250000, tzinfo=UTC)
    if isinstance(received, FlexRequest):
        assert received.isps == (
            RequestIsp(
                start=41,
                min_power=-200_000,
                max_power=-100_000,
                duration=8,
                disposition="Requested",
            ),
            RequestIsp(start=49, min_power=0, max_power=0, duration=1, disposition=None),
        )
        assert received.revision == 2
        assert received.contract_id == "contract-7"
        assert received.period == date(2026, 11, 28)
        assert received.isp_duration == timedelta(minutes=15)
    elif isinstance(received, FlexOffer):
        (option,) = received.options
        assert option.price == Decimal("12.5")
        assert option.min_activation_factor == Decimal("0.5")
        assert option.isps == (PowerIsp(start=41, power=-150_000, duration=8),)
        assert received.expiration == datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    elif isinstance(received, FlexOrder):
        assert received.power_by_isp() == dict.fromkeys(range(41, 49), -150_000)
        assert received.activation_factor == Decimal("0.8")
        assert received.flex_offer_message_id == OFFER_ID
    elif isinstance(received, FlexOfferResponse):
        assert received.result is Result.REJECTED
        assert received.rejection_reason == "Period out of bounds"
        assert received.reference_message_id == OFFER_ID
    else:
        assert isinstance(received, FlexRequestResponse | FlexOrderResponse)
        assert received.result is Result.ACCEPTED
        assert received.reference_message_id in (REQUEST_ID, ORDER_ID)


PEER_TYPES = {
    "FlexRequest": su.FlexRequest,
    "FlexOffer": su.FlexOffer,
    "FlexOrder": su.FlexOrder,
    "FlexRequestResponse": su.FlexRequestResponse,
    "FlexOfferResponse": su.FlexOfferResponse,
    "FlexOrderResponse": su.FlexOrderResponse,
}


@pytest.mark.parametrize("name", list(PEER_TYPES))
def test_shapeshifter_uftp_reads_what_gridgate_sends(name: str) -> None:
    key, public = signing.generate_key_pair()
    message = make_messages("3.1.0")[name]
    raw = codec.render_signed_message(
        message.envelope.sender_domain,
        message.envelope.sender_role,
        signing.sign(codec.encode(message), key),
    )
    envelope = peer.from_xml(raw)
    assert isinstance(envelope, su.SignedMessage)
    assert envelope.sender_domain == message.envelope.sender_domain
    unsealed = peer.unseal_message(envelope.body, signing.public_key_b64(public))
    assert type(unsealed) is PEER_TYPES[name]
    assert unsealed.message_id == message.envelope.message_id
    assert unsealed.version == "3.1.0"
    assert unsealed.time_stamp == "2026-11-27T10:00:00.123Z"
    if isinstance(message, FlexOrder):
        assert [(i.start, i.power, i.duration) for i in unsealed.isps] == [
            (i.start, i.power, i.duration) for i in message.isps
        ]
        assert Decimal(unsealed.price) == message.price
        assert Decimal(unsealed.activation_factor) == message.activation_factor
        assert unsealed.unsolicited is False
    elif isinstance(message, FlexOffer):
        assert [o.option_reference for o in unsealed.offer_options] == ["option-a", "option-b"]
        assert Decimal(unsealed.offer_options[0].price) == Decimal("1234.5678")
    elif isinstance(message, FlexRequest):
        assert [i.disposition for i in unsealed.isps] == ["Available", "Requested", None]
        assert str(unsealed.isp_duration) == "PT15M"
        assert str(unsealed.period) == "2026-11-28"
    else:
        assert unsealed.result == message.result.value  # type: ignore[attr-defined]
