"""MqttLink against the real Mosquitto on 127.0.0.1:1883 (directly or through a TCP proxy)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt
import pytest
import trustme

from adapters.mqtt.client import MqttLink, parse_broker_url
from adapters.mqtt.control_centre import ControlCentre
from adapters.mqtt.payloads import MqttReason, PayloadRejection, encode_ack, encode_setpoint
from adapters.mqtt.topics import ack_topic, setpoint_topic
from gateway.errors import ConfigError, Rejection, TemporaryDeliveryError
from gateway.model import AckStatus, SetpointAck
from tests.adapters.mqtt.conftest import (
    MOSQUITTO_HOST,
    MOSQUITTO_PORT,
    TcpProxy,
    free_port,
    make_setpoint,
)

pytestmark = pytest.mark.services
AGR = "agr.example.com"
FAST_RECONNECT = (0.05, 0.2)


class Inbox:
    """Collects what the link hands to on_ack and on_bad_ack."""

    def __init__(self) -> None:
        self.acks: asyncio.Queue[SetpointAck] = asyncio.Queue()
        self.bad: asyncio.Queue[tuple[str, bytes, Rejection]] = asyncio.Queue()

    async def on_ack(self, ack: SetpointAck) -> None:
        await self.acks.put(ack)

    async def on_bad_ack(self, topic: str, payload: bytes, rejection: Rejection) -> None:
        await self.bad.put((topic, payload, rejection))


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def make_link(client_id: str, prefix: str, inbox: Inbox) -> Callable[..., MqttLink]:
    def make(url: str, **kwargs: Any) -> MqttLink:
        kwargs.setdefault("on_ack", inbox.on_ack)
        kwargs.setdefault("on_bad_ack", inbox.on_bad_ack)
        kwargs.setdefault("ack_prefixes", {AGR: prefix})
        kwargs.setdefault("reconnect_delay", FAST_RECONNECT)
        return MqttLink(url, client_id=client_id, **kwargs)

    return make


@pytest.fixture
async def link(mosquitto_url: str, make_link: Callable[..., MqttLink]) -> AsyncIterator[MqttLink]:
    link = make_link(mosquitto_url)
    await link.start()
    assert link.connected
    yield link
    await link.stop()


async def test_publish_awaits_puback_and_subscriber_gets_exact_bytes(
    link: MqttLink, prefix: str
) -> None:
    topic = setpoint_topic(prefix, "bat-17")
    payload = encode_setpoint(make_setpoint())
    async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as subscriber:
        await subscriber.subscribe(topic, qos=1)
        await link.publish(topic, payload, timeout=5)
        async with asyncio.timeout(5):
            message = await anext(aiter(subscriber.messages))
    assert message.payload == payload
    assert message.topic.value == topic
    assert message.qos == 1
    assert message.retain is False


async def test_deliver_is_publish(link: MqttLink, prefix: str) -> None:
    topic = setpoint_topic(prefix, "r9")
    async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as subscriber:
        await subscriber.subscribe(topic, qos=1)
        await link.deliver(topic, b"\x00\xff binary is kept")
        async with asyncio.timeout(5):
            message = await anext(aiter(subscriber.messages))
    assert message.payload == b"\x00\xff binary is kept"


async def test_setpoints_are_never_retained(link: MqttLink, prefix: str) -> None:
    topic = setpoint_topic(prefix, "bat-17")
    await link.publish(topic, b"{}")
    # a subscriber arriving later must not get it (a stale command could be applied late)
    async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as late:
        await late.subscribe(topic, qos=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await anext(aiter(late.messages))


async def test_acks_from_control_centre_reach_on_ack(
    link: MqttLink, mosquitto_url: str, prefix: str, inbox: Inbox
) -> None:
    def reply(setpoint: dict[str, Any]) -> AckStatus:
        return AckStatus.REJECTED if setpoint["resource"] == "pv-3" else AckStatus.ACCEPTED

    battery, pv = make_setpoint("bat-17"), make_setpoint("pv-3", power=800)
    async with ControlCentre(mosquitto_url, prefix, AGR, reply=reply) as centre:
        await link.publish(setpoint_topic(prefix, "bat-17"), encode_setpoint(battery))
        await link.publish(setpoint_topic(prefix, "pv-3"), encode_setpoint(pv))
        received = await centre.wait_for(2)
        async with asyncio.timeout(5):
            acks = [await inbox.acks.get(), await inbox.acks.get()]

    assert [r["msgId"] for r in received] == [battery.message_id, pv.message_id]
    assert received[1]["intervals"][0]["values"] == [0.8]
    by_id = {a.message_id: a for a in acks}
    assert by_id[battery.message_id].status is AckStatus.ACCEPTED
    assert by_id[battery.message_id].correlation_id == battery.correlation_id
    assert (by_id[battery.message_id].aggregator, by_id[battery.message_id].resource) == (
        AGR,
        "bat-17",
    )
    assert by_id[pv.message_id].status is AckStatus.REJECTED
    assert by_id[pv.message_id].reason is not None
    assert inbox.bad.empty()


async def test_bad_ack_goes_to_on_bad_ack_and_the_link_keeps_going(
    link: MqttLink, prefix: str, inbox: Inbox
) -> None:
    topic = ack_topic(prefix, "bat-17")
    wrong_status = json.dumps(
        {"msgId": "sp-1", "correlationId": "o-1", "status": "DONE", "ts": "2026-11-26T10:00:00Z"}
    ).encode()
    good = encode_ack(msg_id="sp-2", correlation_id="o-2", status=AckStatus.APPLIED)
    async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as centre:
        for payload in (b"{oops", wrong_status, good):
            await centre.publish(topic, payload, qos=1)
        async with asyncio.timeout(5):
            first, second = await inbox.bad.get(), await inbox.bad.get()
            ack = await inbox.acks.get()

    assert first[:2] == (topic, b"{oops")
    assert first[2].reason is MqttReason.INVALID_JSON
    assert second[:2] == (topic, wrong_status)
    assert second[2].reason is MqttReason.SCHEMA_VIOLATION
    assert isinstance(second[2], PayloadRejection)
    assert second[2].field == "/status"
    assert ack.message_id == "sp-2"
    assert ack.status is AckStatus.APPLIED


async def test_a_failing_on_ack_does_not_stop_the_link(
    mosquitto_url: str, make_link: Callable[..., MqttLink], prefix: str
) -> None:
    seen: list[str] = []
    second = asyncio.Event()

    async def on_ack(ack: SetpointAck) -> None:
        seen.append(ack.message_id)
        if ack.message_id == "first":
            raise RuntimeError("the pipeline broke on this one")
        second.set()

    link = make_link(mosquitto_url, on_ack=on_ack)
    await link.start()
    try:
        async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as centre:
            for msg_id in ("first", "second"):
                ack = encode_ack(msg_id=msg_id, correlation_id="o", status=AckStatus.ACCEPTED)
                await centre.publish(ack_topic(prefix, "r1"), ack, qos=1)
            await asyncio.wait_for(second.wait(), 5)
        assert seen == ["first", "second"]
        assert link.connected
    finally:
        await link.stop()


async def test_acks_sent_while_the_gateway_was_away_are_delivered(
    mosquitto_url: str, make_link: Callable[..., MqttLink], prefix: str, inbox: Inbox
) -> None:
    """clean_session=False: the broker queues QoS 1 acks for the stored session (§3.1.2.4)."""
    link = make_link(mosquitto_url)
    await link.start()
    await link.stop()
    assert not link.connected

    async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as centre:
        ack = encode_ack(msg_id="while-away", correlation_id="o", status=AckStatus.APPLIED)
        await centre.publish(ack_topic(prefix, "bat-17"), ack, qos=1)

    await link.start()
    try:
        async with asyncio.timeout(5):
            received = await inbox.acks.get()
        assert received.message_id == "while-away"
    finally:
        await link.stop()


async def test_publish_to_an_unreachable_broker_raises_temporary_error_in_time(
    make_link: Callable[..., MqttLink],
) -> None:
    link = make_link(f"mqtt://127.0.0.1:{free_port()}", connect_timeout=1)
    started = time.monotonic()
    await link.start()  # returns after the first failed attempt; keeps retrying behind
    try:
        assert not link.connected
        with pytest.raises(TemporaryDeliveryError, match="not connected"):
            await link.publish("x/r/cmd/setpoint", b"{}", timeout=1)
        with pytest.raises(TemporaryDeliveryError, match="not reachable"):
            await link.wait_connected(0.3)
        assert time.monotonic() - started < 3
    finally:
        await link.stop()


async def test_publish_without_puback_times_out_as_temporary_error(
    make_link: Callable[..., MqttLink], mosquitto_url: str, prefix: str
) -> None:
    proxy = TcpProxy(MOSQUITTO_PORT)
    await proxy.start()
    link = make_link(f"mqtt://127.0.0.1:{proxy.port}")
    await link.start()
    try:
        await link.publish(setpoint_topic(prefix, "r1"), b"{}", timeout=5)  # through: fine
        proxy.blackhole = True  # the broker never sees the next PUBLISH, so no PUBACK
        started = time.monotonic()
        with pytest.raises(TemporaryDeliveryError, match="no PUBACK"):
            await link.publish(setpoint_topic(prefix, "r1"), b"{}", timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 2
    finally:
        await link.stop()
        await proxy.cut()


async def test_reconnects_and_resubscribes_after_the_connection_is_cut(
    make_link: Callable[..., MqttLink], mosquitto_url: str, prefix: str, inbox: Inbox
) -> None:
    proxy = TcpProxy(MOSQUITTO_PORT)
    await proxy.start()
    link = make_link(f"mqtt://127.0.0.1:{proxy.port}")
    await link.start()
    try:
        assert link.connections == 1
        await proxy.cut()
        async with asyncio.timeout(5):
            while link.connected:
                await asyncio.sleep(0.02)
        with pytest.raises(TemporaryDeliveryError):
            await link.publish(setpoint_topic(prefix, "bat-17"), b"{}", timeout=1)

        await proxy.start()  # same port
        await link.wait_connected(10)
        assert link.connections == 2

        async with ControlCentre(mosquitto_url, prefix, AGR) as centre:
            sp = make_setpoint()
            await link.publish(setpoint_topic(prefix, "bat-17"), encode_setpoint(sp), timeout=5)
            await centre.wait_for(1)
            async with asyncio.timeout(5):
                ack = await inbox.acks.get()
        assert ack.message_id == sp.message_id
    finally:
        await link.stop()
        await proxy.cut()


async def test_mqtts_with_a_private_ca(
    make_link: Callable[..., MqttLink], prefix: str, mosquitto_url: str
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    proxy = TcpProxy(MOSQUITTO_PORT, server_ssl=server_ctx)  # TLS in front of Mosquitto
    await proxy.start()
    url = f"mqtts://127.0.0.1:{proxy.port}"

    untrusting = make_link(url, connect_timeout=2)  # default context: the system CAs
    await untrusting.start()
    trusting_ctx = ssl.create_default_context()
    ca.configure_trust(trusting_ctx)
    trusting = MqttLink(url, client_id=untrusting.client_id + "-tls", ssl_context=trusting_ctx)
    await trusting.start()
    try:
        assert not untrusting.connected
        assert trusting.connected
        topic = setpoint_topic(prefix, "r1")
        async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as subscriber:
            await subscriber.subscribe(topic, qos=1)
            await trusting.publish(topic, b"over tls", timeout=5)
            async with asyncio.timeout(5):
                assert (await anext(aiter(subscriber.messages))).payload == b"over tls"
    finally:
        await untrusting.stop()
        await trusting.stop()
        await proxy.cut()
        async with aiomqtt.Client(
            MOSQUITTO_HOST, MOSQUITTO_PORT, identifier=trusting.client_id, clean_session=True
        ):
            pass


# ---------------------------------------------------------------------------------------------
# Configuration


def test_broker_url_forms() -> None:
    plain = parse_broker_url("mqtt://broker.example")
    assert (plain.host, plain.port, plain.tls, plain.username) == (
        "broker.example",
        1883,
        False,
        None,
    )
    tls = parse_broker_url("mqtts://gw%40dso:p%3Ass@broker.example:8884")
    assert (tls.host, tls.port, tls.tls) == ("broker.example", 8884, True)
    assert (tls.username, tls.password) == ("gw@dso", "p:ss")
    assert tls.redacted == "mqtts://gw@dso:***@broker.example:8884"
    assert parse_broker_url("mqtts://b").port == 8883


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://broker:1883", "scheme"),
        ("broker:1883", "scheme"),
        ("mqtt://:1883", "no host"),
        ("mqtt://broker:99999", "not a valid URL"),
        ("mqtt://broker:1883/topic", "no path"),
    ],
)
def test_bad_broker_urls_are_config_errors_naming_the_key(url: str, rule: str) -> None:
    with pytest.raises(ConfigError, match=rf"^mqtt\.url: .*{rule}"):
        parse_broker_url(url)


def test_bad_or_duplicate_prefixes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"participants\[a1\]\.mqtt_prefix: .*wildcards"):
        MqttLink("mqtt://b", client_id="g", ack_prefixes={"a1": "hub/+/x"})
    with pytest.raises(ConfigError, match="also a1's prefix"):
        MqttLink("mqtt://b", client_id="g", ack_prefixes={"a1": "hub/x", "a2": "hub/x"})
    with pytest.raises(ConfigError, match="not mqtts"):
        MqttLink("mqtt://b", client_id="g", ssl_context=ssl.create_default_context())


async def test_stopping_never_hangs_on_a_client_that_cannot_say_goodbye(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """aiomqtt awaits the broker's answer to DISCONNECT without a timeout: a task that holds
    such a client past its cancellation is left behind after STOP_TIMEOUT, with a warning."""
    from adapters.mqtt import client as mqtt_client

    monkeypatch.setattr(mqtt_client, "STOP_TIMEOUT", 0.2)
    release = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # like __aexit__ waiting for a DISCONNECT answer

    task = asyncio.ensure_future(stuck())
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await mqtt_client.cancel_within(task, "test link")
    assert asyncio.get_running_loop().time() - started < 1.0
    assert "test link: no clean disconnect from the broker" in caplog.text
    release.set()
    await task

    quick = asyncio.ensure_future(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await mqtt_client.cancel_within(quick, "quick link")
    assert quick.cancelled()
