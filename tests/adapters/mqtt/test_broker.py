"""The embedded amqtt broker: lifecycle, and a full setpoint → ack round trip through it."""

from __future__ import annotations

import asyncio
import socket
import uuid

import aiomqtt
import pytest

from adapters.mqtt.broker import EmbeddedBroker, EmbeddedBrokerError
from adapters.mqtt.client import MqttLink
from adapters.mqtt.control_centre import ControlCentre
from adapters.mqtt.payloads import encode_setpoint
from adapters.mqtt.topics import setpoint_topic
from gateway.model import AckStatus, SetpointAck
from tests.adapters.mqtt.conftest import make_setpoint


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def test_starts_on_a_free_loopback_port_and_stops() -> None:
    broker = EmbeddedBroker()
    await broker.start()
    port = broker.port
    try:
        assert port != 0
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        async with aiomqtt.Client("127.0.0.1", port, identifier="probe") as client:
            await client.subscribe("probe/#", qos=1)
            await client.publish("probe/x", b"hello", qos=1, timeout=5)
            async with asyncio.timeout(5):
                assert (await anext(aiter(client.messages))).payload == b"hello"
    finally:
        await broker.stop()
    assert not accepts_connections(port)
    with pytest.raises(RuntimeError, match="not running"):
        _ = broker.url


async def test_two_brokers_get_different_ports() -> None:
    async with EmbeddedBroker() as first, EmbeddedBroker() as second:
        assert first.port != second.port


async def test_refuses_to_bind_to_all_interfaces() -> None:
    with pytest.raises(EmbeddedBrokerError, match="all interfaces"):
        await EmbeddedBroker().start(host="0.0.0.0")


async def test_a_taken_port_is_an_error() -> None:
    async with EmbeddedBroker() as first:
        with pytest.raises(EmbeddedBrokerError, match=f"127.0.0.1:{first.port}"):
            await EmbeddedBroker().start(port=first.port)


async def test_setpoint_to_ack_round_trip_through_the_embedded_broker() -> None:
    prefix = f"demo/{uuid.uuid4().hex[:8]}/agr1"
    acks: asyncio.Queue[SetpointAck] = asyncio.Queue()

    async def on_ack(ack: SetpointAck) -> None:
        await acks.put(ack)

    async with EmbeddedBroker() as broker:
        link = MqttLink(
            broker.url, client_id="gridgate-demo", on_ack=on_ack, ack_prefixes={"agr1": prefix}
        )
        await link.start()
        try:
            async with ControlCentre(
                broker.url, prefix, "agr1", reply=lambda sp: AckStatus.APPLIED
            ) as centre:
                sp = make_setpoint("hp-4", power=3000)
                await link.publish(setpoint_topic(prefix, "hp-4"), encode_setpoint(sp), timeout=5)
                [received] = await centre.wait_for(1)
                async with asyncio.timeout(5):
                    ack = await acks.get()
        finally:
            await link.stop()

    assert received["msgId"] == sp.message_id
    assert received["intervals"][0]["values"] == [3.0]
    assert (ack.message_id, ack.correlation_id) == (sp.message_id, sp.correlation_id)
    assert (ack.aggregator, ack.resource, ack.status) == ("agr1", "hp-4", AckStatus.APPLIED)
    assert centre.acks_sent == 1


async def test_control_centre_start_reports_an_unreachable_broker() -> None:
    async with EmbeddedBroker() as broker:
        url = broker.url
    centre = ControlCentre(url, "demo/agr1", "agr1")
    with pytest.raises(aiomqtt.MqttError):
        await centre.start()
    await centre.stop()
