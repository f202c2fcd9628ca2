"""Interop over real HTTP: shapeshifter-uftp's own DSO and AGR services talk through gridgate.

Covered (who signs what reaches whom):
- signed by shapeshifter-uftp, accepted by gridgate and relayed verbatim to the other
  shapeshifter service, which checks the original signature: all six types, FlexRequest,
  FlexRequestResponse, FlexOffer, FlexOfferResponse, FlexOrder, FlexOrderResponse, in
  UFTP 3.1.0 and 3.0.0;
- signed by gridgate (its key, its domain), accepted by the shapeshifter services: the
  three responses gridgate originates (FlexRequestResponse and FlexOrderResponse as AGR,
  FlexOfferResponse as DSO; Rejected, and Accepted for an MQTT-only aggregator), and the
  three request types, rendered by gridgate's codec and posted to the services directly
  (gridgate only relays those in operation; `tests/adapters/uftp/test_interop_shapeshifter.py`
  checks all six at the codec level).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import aiohttp
import pytest
from shapeshifter_uftp import uftp as su

from gateway.audit.chain import verify_chain
from gateway.model import Message, Role
from gateway.store.db import sessionmaker
from tests.adapters.uftp.conftest import make_messages

from .conftest import AGR, AGR_MQTT, CP, DSO, GRIDGATE, LIMIT, SPARE_CP, World, tomorrow
from .exchange import (
    ACCEPTED,
    REJECTED,
    accept_offer,
    audited,
    confirm_order,
    flex_offer,
    flex_order,
    flex_request,
    new_id,
    offer_on_request,
    power_by_isp,
    same,
    send,
)

# -- signed by shapeshifter-uftp, relayed by gridgate ---------------------------------------


@pytest.mark.parametrize("version", ["3.1.0", "3.0.0"])
async def test_the_whole_exchange_between_shapeshifter_dso_and_agr_runs_through_gridgate(
    world: World, version: str
) -> None:
    conv = world.conversation
    world.agr.reactions = {su.FlexRequest: offer_on_request, su.FlexOrder: confirm_order}
    world.dso.reactions = {su.FlexOffer: accept_offer}
    dso_client = world.dso.agr_client(AGR, version=version)

    # 1. FlexRequest: DSO -> gridgate -> AGR, whose service checks the DSO's signature
    request = flex_request(conv)
    await send(dso_client, "send_flex_request", request)
    got_request = await world.agr.inbox.get(su.FlexRequest, same(conv))
    assert got_request.message_id == request.message_id
    assert (got_request.sender_domain, got_request.recipient_domain) == (DSO, AGR)
    assert got_request.version == version
    assert got_request.congestion_point == CP
    assert str(got_request.period) == tomorrow().isoformat()
    assert got_request.revision == 1
    assert [
        (i.start, i.duration, i.min_power, i.max_power, i.disposition) for i in got_request.isps
    ] == [(41, 4, -150_000, -100_000, "Requested"), (45, 1, 0, 0, "Available")]

    # 2. the AGR service answers and offers with its own client: both reach the DSO
    answer = await world.dso.inbox.get(su.FlexRequestResponse, same(conv))
    assert answer.flex_request_message_id == request.message_id
    assert answer.result == ACCEPTED and answer.sender_domain == AGR
    offer = await world.dso.inbox.get(su.FlexOffer, same(conv))
    assert offer.sender_domain == AGR and offer.flex_request_message_id == request.message_id
    (option,) = offer.offer_options
    assert option.option_reference == "option-a" and Decimal(option.price) == Decimal("12.5")
    assert power_by_isp(option.isps) == dict.fromkeys(range(41, 45), -120_000)

    # 3. the DSO service accepts the offer; then orders it, within the limit
    offer_answer = await world.agr.inbox.get(su.FlexOfferResponse, same(conv))
    assert offer_answer.flex_offer_message_id == offer.message_id
    assert offer_answer.result == ACCEPTED and offer_answer.sender_domain == DSO
    order = flex_order(conv, offer.message_id, power_by_isp(option.isps))
    await send(dso_client, "send_flex_order", order)
    got_order = await world.agr.inbox.get(su.FlexOrder, same(conv))
    assert got_order.message_id == order.message_id
    assert got_order.flex_offer_message_id == offer.message_id
    assert power_by_isp(got_order.isps) == dict.fromkeys(range(41, 45), -120_000)
    assert Decimal(got_order.price) == Decimal("12.5") and got_order.order_reference == "order-1"
    order_answer = await world.dso.inbox.get(su.FlexOrderResponse, same(conv))
    assert order_answer.flex_order_message_id == order.message_id
    assert order_answer.result == ACCEPTED and order_answer.sender_domain == AGR
    assert order_answer.version == version

    # gridgate relayed the originals: each service checked the other's key, never gridgate's
    lookups = {(me, domain, role) for me, domain, role in world.net.verified}
    assert (AGR, DSO, "DSO") in lookups and (DSO, AGR, "AGR") in lookups
    assert not any(domain == GRIDGATE for _, domain, _ in lookups)

    # gridgate audited all six as accepted, reserved the order's power, delivered everything
    await world.settle()
    accepted = await audited(world, "message.accepted")
    ids = {
        request.message_id: "FlexRequest",
        answer.message_id: "FlexRequestResponse",
        offer.message_id: "FlexOffer",
        offer_answer.message_id: "FlexOfferResponse",
        order.message_id: "FlexOrder",
        order_answer.message_id: "FlexOrderResponse",
    }
    assert {mid: d["kind"] for mid, d in accepted.items()} == ids
    assert all(d["version"] == version for d in accepted.values())
    assert await audited(world, "message.rejected") == {}
    # the order activates 0.8 of the offered power: that is what the grid check books
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 41) == -96_000
    rows = [r for r in await world.outbox() if r.conversation_id == conv]
    assert sorted(r.message_id for r in rows) == sorted(ids)
    assert {r.status for r in rows} == {"delivered"}
    async with sessionmaker(world.gateway.engine)() as session:
        assert (await verify_chain(session)).ok


# -- signed by gridgate, accepted by shapeshifter-uftp --------------------------------------


@pytest.mark.parametrize("version", ["3.1.0", "3.0.0"])
async def test_an_order_over_the_limit_gets_gridgates_signed_rejection(
    world: World, version: str
) -> None:
    conv = world.conversation
    powers = {41: -250_000, 42: -(LIMIT + 50_000)}
    # the DSO asks, the aggregator offers it, the DSO orders all of it
    request = flex_request(conv)
    await send(world.dso.agr_client(AGR, version=version), "send_flex_request", request)
    await world.agr.inbox.get(su.FlexRequest, same(conv))
    offer = flex_offer(conv, request.message_id, powers=powers)
    await send(world.agr.dso_client(DSO, version=version), "send_flex_offer", offer)
    await world.dso.inbox.get(su.FlexOffer, same(conv))
    order = flex_order(conv, offer.message_id, powers, ref="too-much")
    order.activation_factor = Decimal("1.00")
    await send(world.dso.agr_client(AGR, version=version), "send_flex_order", order)
    answer = await world.dso.inbox.get(su.FlexOrderResponse, same(conv))
    assert answer.sender_domain == GRIDGATE and answer.recipient_domain == DSO
    assert answer.flex_order_message_id == order.message_id
    assert answer.version == version
    assert answer.result == REJECTED
    assert answer.rejection_reason.startswith("Grid limit exceeded: ISP 42")
    assert f"exceeds the limit {LIMIT} W by 50000 W" in answer.rejection_reason
    # the DSO service checked gridgate's signature with gridgate's key, as an AGR
    assert (DSO, GRIDGATE, "AGR") in world.net.verified
    await world.settle()
    assert world.agr.inbox.of(su.FlexOrder) == []  # nothing was relayed
    ((answered, rejected),) = (await audited(world, "message.rejected")).items()
    assert rejected["rule"] == "Grid limit exceeded" and rejected["kind"] == "FlexOrder"
    (queued,) = rejected["out"]  # the one message it sent on: gridgate's signed answer
    assert queued["what"] == "FlexOrderResponse" and queued["result"] == "Rejected"
    assert answered == order.message_id and queued["to"] == "dso"
    assert world.gateway.grid_check.accepted_power(CP, tomorrow(), 42) == 0


async def test_an_offer_without_resources_gets_gridgates_signed_rejection(world: World) -> None:
    conv = world.conversation
    offer = flex_offer(conv, new_id(), cp=SPARE_CP)
    await send(world.agr.dso_client(DSO), "send_flex_offer", offer)
    answer = await world.agr.inbox.get(su.FlexOfferResponse, same(conv))
    assert answer.sender_domain == GRIDGATE and answer.recipient_domain == AGR
    assert answer.flex_offer_message_id == offer.message_id
    assert answer.result == REJECTED
    assert answer.rejection_reason.startswith("Unregistered resources")
    assert SPARE_CP in answer.rejection_reason
    assert (AGR, GRIDGATE, "DSO") in world.net.verified
    await world.settle()
    assert world.dso.inbox.of(su.FlexOffer) == []
    (rejected,) = (await audited(world, "message.rejected")).values()
    assert rejected["rule"] == "Unregistered resources" and rejected["kind"] == "FlexOffer"


async def test_a_request_to_an_unknown_domain_gets_gridgates_signed_rejection(
    world: World,
) -> None:
    conv = world.conversation
    request = flex_request(conv)
    await send(world.dso.agr_client("nobody.example.com"), "send_flex_request", request)
    answer = await world.dso.inbox.get(su.FlexRequestResponse, same(conv))
    assert answer.sender_domain == GRIDGATE and answer.recipient_domain == DSO
    assert answer.flex_request_message_id == request.message_id
    assert answer.result == REJECTED
    assert answer.rejection_reason.startswith("Unknown RecipientDomain")
    assert "nobody.example.com" in answer.rejection_reason
    assert (DSO, GRIDGATE, "AGR") in world.net.verified
    await world.settle()
    assert world.agr.inbox.of(su.FlexRequest) == []
    (rejected,) = (await audited(world, "message.rejected")).values()
    assert rejected["rule"] == "Unknown RecipientDomain" and rejected["kind"] == "FlexRequest"


async def test_an_order_for_an_mqtt_only_aggregator_gets_gridgates_signed_acceptance(
    world: World,
) -> None:
    conv = world.conversation
    order = flex_order(conv, None, {50: 30_000})  # unsolicited: the aggregator made no offer
    await send(world.dso.agr_client(AGR_MQTT), "send_flex_order", order)
    answer = await world.dso.inbox.get(su.FlexOrderResponse, same(conv))
    assert answer.sender_domain == GRIDGATE and answer.recipient_domain == DSO
    assert answer.flex_order_message_id == order.message_id
    assert answer.result == ACCEPTED and answer.rejection_reason is None
    await world.settle()
    (accepted,) = (await audited(world, "message.accepted")).values()
    assert set((await audited(world, "message.accepted")).keys()) == {order.message_id}
    (queued,) = [o for o in accepted["out"] if o["what"] == "FlexOrderResponse"]
    assert queued["result"] == "Accepted" and queued["to"] == "dso"


REQUEST_TYPES = {
    "FlexRequest": (su.FlexRequest, Role.DSO, AGR),
    "FlexOffer": (su.FlexOffer, Role.AGR, DSO),
    "FlexOrder": (su.FlexOrder, Role.DSO, AGR),
}


@pytest.mark.parametrize("name", list(REQUEST_TYPES))
async def test_the_request_types_signed_by_gridgate_are_accepted_by_the_services(
    world: World, name: str
) -> None:
    kind, role, recipient = REQUEST_TYPES[name]
    sample: Message = make_messages()[name]
    message = replace(
        sample,
        envelope=replace(
            sample.envelope,
            message_id=new_id(),
            conversation_id=world.conversation,
            sender_domain=GRIDGATE,
            recipient_domain=recipient,
            sender_role=role,
        ),
    )
    codec = world.gateway.registry.codec  # what gridgate signs its own responses with
    assert codec is not None
    raw = codec.render(message, sender_role=role)
    service = world.agr if recipient == AGR else world.dso
    async with (
        aiohttp.ClientSession() as session,
        session.post(service.url, data=raw, headers={"Content-Type": "text/xml"}) as response,
    ):
        assert response.status == 200, await response.text()
    got = await service.inbox.get(kind, same(world.conversation))
    assert got.message_id == message.envelope.message_id and got.sender_domain == GRIDGATE
    assert got.congestion_point == message.congestion_point  # type: ignore[attr-defined]
    assert (recipient, GRIDGATE, role.value) in world.net.verified
