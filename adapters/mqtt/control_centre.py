"""A simulated aggregator control centre: a real MQTT client for `gridgate demo` and tests.

It subscribes to `{prefix}/+/cmd/setpoint`, records each setpoint it receives, and answers
each on `{prefix}/{resource}/ack` (QoS 1) with the status `reply` chooses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiomqtt

from adapters.mqtt.client import cancel_within, new_client, parse_broker_url
from adapters.mqtt.payloads import encode_ack
from adapters.mqtt.topics import TopicError, ack_topic, parse_setpoint_topic, setpoint_filter
from gateway.model import AckStatus
from gateway.tasks import spawn

log = logging.getLogger(__name__)

Reply = Callable[[dict[str, Any]], AckStatus]


def accept_all(setpoint: dict[str, Any]) -> AckStatus:
    """Answer every setpoint ACCEPTED."""
    return AckStatus.ACCEPTED


class ControlCentre:
    """An aggregator's control centre that acknowledges every setpoint it receives.

    `received` holds every setpoint (the decoded JSON object, in arrival order, duplicates
    included); `await wait_for(n)` returns once `n` have arrived. `acks_sent` counts acks.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        aggregator_id: str,
        *,
        reply: Reply | None = None,
        client_id: str | None = None,
    ) -> None:
        self.address = parse_broker_url(url, key="control_centre.url")
        self.prefix = prefix
        self.filter = setpoint_filter(prefix)
        self.aggregator_id = aggregator_id
        self.client_id = client_id or f"cc-{aggregator_id}"
        self._reply = reply or accept_all
        self.received: list[dict[str, Any]] = []
        self.acks_sent = 0
        self._arrived = asyncio.Condition()
        self._ready: asyncio.Future[None] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and subscribe; return once the subscription is in place."""
        if self._runner is not None:
            raise RuntimeError(f"control centre {self.aggregator_id} already started")
        self._ready = asyncio.get_running_loop().create_future()
        self._runner = spawn(self._run(self._ready), name=f"control-centre:{self.aggregator_id}")
        await self._ready  # raises why the connection failed, if it did

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await cancel_within(runner, f"control centre {self.aggregator_id}")

    # a timeout argument keeps the demo's and the tests' waits one call
    async def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Return the setpoints received once there are at least `count` of them."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received) >= count), timeout
            )
        return list(self.received)

    async def __aenter__(self) -> ControlCentre:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            await self._serve(ready)
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e)
                return  # start() reports it
            raise

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        client = new_client(self.address, self.client_id, clean_session=True)
        async with client:
            await client.subscribe(self.filter, qos=1)
            ready.set_result(None)
            async for message in client.messages:
                await self._handle(client, message)

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        try:
            resource = parse_setpoint_topic(self.prefix, topic)
            doc = json.loads(message.payload)
            if not isinstance(doc, dict):
                raise TypeError("a setpoint is a JSON object")
            msg_id, correlation_id = str(doc["msgId"]), str(doc["correlationId"])
        except (TopicError, ValueError, TypeError, KeyError) as e:
            log.warning(
                "control centre %s: unusable setpoint on %s: %s", self.aggregator_id, topic, e
            )
            return
        async with self._arrived:
            self.received.append(doc)
            self._arrived.notify_all()
        status = self._reply(doc)
        reason = None
        if status in (AckStatus.REJECTED, AckStatus.FAILED):
            reason = f"simulated control centre {self.aggregator_id} answered {status.value}"
        await client.publish(
            ack_topic(self.prefix, resource),
            encode_ack(msg_id=msg_id, correlation_id=correlation_id, status=status, reason=reason),
            qos=1,
        )
        self.acks_sent += 1
