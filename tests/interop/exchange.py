"""The shapeshifter-uftp messages the interop tests send, and how they send and await them.

Builders make the peer's own (xsdata) messages for tomorrow's Period at the DSO's congestion
point; the clients fill in Version, the domains, TimeStamp and the IDs they are not given.
Reactions run in a service's worker thread and answer with the service's own client, so
every answer is signed by the shapeshifter party and travels through gridgate.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from shapeshifter_uftp import uftp as su
from xsdata.models.datatype import XmlDate, XmlDuration

from gateway.model import isp_count

from .conftest import CP, ZONE, World, tomorrow

ACCEPTED, REJECTED = su.AcceptedRejected.ACCEPTED, su.AcceptedRejected.REJECTED
DISPUTED = su.AcceptedDisputed.DISPUTED


def new_id() -> str:
    return str(uuid.uuid4())


def in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="seconds")


def xml_date(day: date) -> XmlDate:
    return XmlDate(day.year, day.month, day.day)


def isps_tomorrow() -> int:
    """How many ISPs tomorrow has: 96, or 92/100 when the clocks change."""
    return isp_count(tomorrow(), ZONE, timedelta(minutes=15))


def flex_header(cp: str = CP) -> dict[str, Any]:
    return {
        "isp_duration": XmlDuration("PT15M"),
        "time_zone": ZONE,
        "period": xml_date(tomorrow()),
        "congestion_point": cp,
    }


def flex_request(conversation: str, *, cp: str = CP) -> su.FlexRequest:
    return su.FlexRequest(
        **flex_header(cp),
        message_id=new_id(),
        conversation_id=conversation,
        isps=[
            su.FlexRequestISP(
                disposition=su.AvailableRequested.REQUESTED,
                min_power=-150_000,
                max_power=-100_000,
                start=41,
                duration=4,
            ),
            su.FlexRequestISP(
                disposition=su.AvailableRequested.AVAILABLE, min_power=0, max_power=0, start=45
            ),
        ],
        revision=1,
        expiration_date_time=in_an_hour(),
    )


def offer_option(
    reference: str, powers: dict[int, int], price: str, min_activation_factor: str = "0.5"
) -> su.FlexOfferOption:
    return su.FlexOfferOption(
        isps=[su.FlexOfferOptionISP(power=p, start=i) for i, p in powers.items()],
        option_reference=reference,
        price=Decimal(price),
        min_activation_factor=Decimal(min_activation_factor),
    )


def flex_offer(
    conversation: str,
    request_id: str | None,
    *,
    cp: str = CP,
    powers: dict[int, int] | None = None,
    options: list[su.FlexOfferOption] | None = None,
) -> su.FlexOffer:
    """An offer of `options`, else of option-a: the given power per ISP, or -120 kW in 41-44."""
    if options is None:
        isps = (
            [su.FlexOfferOptionISP(power=-120_000, start=41, duration=4)]
            if powers is None
            else [su.FlexOfferOptionISP(power=p, start=i) for i, p in powers.items()]
        )
        options = [
            su.FlexOfferOption(
                isps=isps,
                option_reference="option-a",
                price=Decimal("12.50"),
                min_activation_factor=Decimal("0.5"),
            )
        ]
    return su.FlexOffer(
        **flex_header(cp),
        message_id=new_id(),
        conversation_id=conversation,
        offer_options=options,
        expiration_date_time=in_an_hour(),
        flex_request_message_id=request_id,
        unsolicited=True if request_id is None else None,
        currency="EUR",
    )


def flex_order(
    conversation: str,
    offer_id: str | None,
    powers: dict[int, int],
    *,
    ref: str = "order-1",
    option: str = "option-a",
    price: str = "12.50",
    activation_factor: str = "0.8",
) -> su.FlexOrder:
    """An order of `option` of offer `offer_id`; without one, an unsolicited order."""
    return su.FlexOrder(
        **flex_header(),
        message_id=new_id(),
        conversation_id=conversation,
        isps=[su.FlexOrderISP(power=p, start=i) for i, p in powers.items()],
        flex_offer_message_id=offer_id,
        unsolicited=True if offer_id is None else None,
        price=Decimal(price),
        currency="EUR",
        order_reference=ref,
        option_reference=option,
        activation_factor=Decimal(activation_factor),
    )


def power_by_isp(isps: list[Any]) -> dict[int, int]:
    return {i.start + n: i.power for i in isps for n in range(i.duration)}


# -- the services' reactions (they run in the services' worker threads) ---------------------


def offer_on_request(service: Any, request: su.FlexRequest) -> None:
    """The aggregator accepts the request and offers, both with its own DSO client."""
    client = service.dso_client(request.sender_domain, version=request.version)
    client.send_flex_request_response(
        su.FlexRequestResponse(
            conversation_id=request.conversation_id,
            flex_request_message_id=request.message_id,
            result=ACCEPTED,
        )
    )
    client.send_flex_offer(flex_offer(request.conversation_id, request.message_id))


def accept_request(service: Any, request: su.FlexRequest) -> None:
    service.dso_client(request.sender_domain, version=request.version).send_flex_request_response(
        su.FlexRequestResponse(
            conversation_id=request.conversation_id,
            flex_request_message_id=request.message_id,
            result=ACCEPTED,
        )
    )


def accept_offer(service: Any, offer: su.FlexOffer) -> None:
    service.agr_client(offer.sender_domain, version=offer.version).send_flex_offer_response(
        su.FlexOfferResponse(
            conversation_id=offer.conversation_id,
            flex_offer_message_id=offer.message_id,
            result=ACCEPTED,
        )
    )


def confirm_order(service: Any, order: su.FlexOrder) -> None:
    service.dso_client(order.sender_domain, version=order.version).send_flex_order_response(
        su.FlexOrderResponse(
            conversation_id=order.conversation_id,
            flex_order_message_id=order.message_id,
            result=ACCEPTED,
        )
    )


async def send(client: Any, method: str, message: Any) -> None:
    """A shapeshifter client call (blocking `requests`), off gridgate's event loop."""
    await asyncio.to_thread(getattr(client, method), message)


def same(conversation: str) -> Any:
    return lambda m: m.conversation_id == conversation


async def audited(world: World, event: str) -> dict[str, dict[str, Any]]:
    """The audit entries of one event in this conversation, by MessageID, details parsed."""
    return {
        e.message_id or "": json.loads(e.detail)
        for e in await world.audit(event)
        if e.conversation_id == world.conversation
    }


async def all_accepted(world: World, kinds: dict[str, str], version: str) -> None:
    """gridgate accepted exactly these messages of the conversation, delivered them all."""
    await world.settle()
    accepted = await audited(world, "message.accepted")
    assert {mid: d["kind"] for mid, d in accepted.items()} == kinds
    assert {d["version"] for d in accepted.values()} == {version}
    assert await audited(world, "message.rejected") == {}
    rows = [r for r in await world.outbox() if r.conversation_id == world.conversation]
    assert sorted(r.message_id for r in rows) == sorted(kinds)
    assert {r.status for r in rows} == {"delivered"}
