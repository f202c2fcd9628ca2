"""gridgate's one connection to an MQTT broker, driven from the asyncio loop by aiomqtt.

Rules (docs/mqtt.md): MQTT 3.1.1; setpoints go out QoS 1, never retained, and `publish`
returns only once the broker's PUBACK is in; acks come in QoS 1 on each aggregator's
`{prefix}/+/ack`. The session is persistent (clean_session=False, a stable client id) so
the broker keeps the subscriptions and queues QoS 1 acks while gridgate is briefly away.
aiomqtt does not reconnect by itself (empicano/aiomqtt #334), so a background task does,
with exponential backoff, and subscribes again on every new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from adapters.mqtt.payloads import MqttReason, PayloadRejection, decode_ack
from adapters.mqtt.topics import TopicError, ack_filter, parse_ack_topic, validate_prefix
from gateway.errors import ConfigError, Rejection, TemporaryDeliveryError
from gateway.model import SetpointAck
from gateway.tasks import spawn

log = logging.getLogger(__name__)

AckHandler = Callable[[SetpointAck], Awaitable[None]]
BadAckHandler = Callable[[str, bytes, Rejection], Awaitable[None]]

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
PENDING_CALLS_WARNING = 10_000


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is, from an `mqtt://` or `mqtts://` URL."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @property
    def redacted(self) -> str:
        """The URL without the password, for logs and error messages."""
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str, *, key: str = "mqtt.url") -> BrokerAddress:
    """Parse `mqtt://[user:password@]host[:port]` or `mqtts://…`; raise ConfigError naming `key`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{key}: {url!r} is not a valid URL: {e}") from e
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"{key}: the scheme must be mqtt:// or mqtts://, got {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError(f"{key}: the broker URL names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{key}: a broker URL has no path, query or fragment")
    return BrokerAddress(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def new_client(
    address: BrokerAddress, client_id: str, *, clean_session: bool, **options: Any
) -> aiomqtt.Client:
    """An MQTT 3.1.1 client for `address` (the embedded broker has no MQTT 5)."""
    return aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=clean_session,
        **options,
    )


class MqttLink:
    """One persistent MQTT 3.1.1 connection: publish setpoints, receive acks.

    `ack_prefixes` maps each aggregator id to its topic prefix; the link subscribes to
    `{prefix}/+/ack` for each and hands every decoded ack to `on_ack`. An ack that fails
    to decode (or arrives on a topic outside the tree) is logged and handed to
    `on_bad_ack(topic, payload, rejection)` for the audit trail; neither callback can
    stop the link. Start with `start()`, end with `stop()`.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        on_ack: AckHandler | None = None,
        ack_prefixes: dict[str, str] | None = None,
        on_bad_ack: BadAckHandler | None = None,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: int = 30,
        connect_timeout: float = 10.0,
        reconnect_delay: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.address = parse_broker_url(url)
        if not client_id:
            raise ConfigError("mqtt.client_id: a persistent session needs a stable client id")
        self.client_id = client_id
        self._on_ack = on_ack
        self._on_bad_ack = on_bad_ack
        self._prefixes = dict(ack_prefixes or {})
        self._check_prefixes()
        if ssl_context is not None and not self.address.tls:
            raise ConfigError(f"mqtt.url: an SSL context was given but {url!r} is not mqtts://")
        self._ssl_context = ssl_context
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._reconnect_min, self._reconnect_max = reconnect_delay

        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self.connections = 0  # how many times a connection was established (tests, metrics)

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        """Start the connection task and wait for its first attempt to end.

        Returns whether or not the broker could be reached: while it cannot, the task keeps
        trying and `publish` raises TemporaryDeliveryError (the outbox retries later).
        """
        if self._runner is not None:
            raise RuntimeError(f"MQTT link {self.client_id} already started")
        self._stopping = False
        if self._ssl_context is None and self.address.tls:
            # loads the system CA store from disk: once, here, not on every reconnect
            self._ssl_context = ssl.create_default_context()
        self._runner = spawn(self._run(), name=f"mqtt-link:{self.client_id}")
        await self._first_attempt.wait()

    # a timeout argument, not asyncio.timeout(): its expiry is a TemporaryDeliveryError
    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until the link is connected; raise TemporaryDeliveryError after `timeout` s."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError as e:
            raise TemporaryDeliveryError(
                f"MQTT broker {self.address.redacted} not reachable within {timeout} s"
            ) from e

    async def stop(self) -> None:
        """Disconnect cleanly (the broker keeps the session) and end the connection task."""
        self._stopping = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await cancel_within(runner, f"MQTT link {self.client_id}")
        self._first_attempt.clear()

    # a timeout argument, not asyncio.timeout(): its expiry is a TemporaryDeliveryError
    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        timeout: float = 10,  # noqa: ASYNC109
    ) -> None:
        """Publish QoS 1 and return once the broker's PUBACK arrived.

        Never `retain` a command (docs/mqtt.md); a state whose latest value a late
        subscriber needs (the grid check's traffic light) is retained. Raise
        TemporaryDeliveryError when not connected, when the connection fails, or when no
        PUBACK comes within `timeout` seconds.
        """
        client = self._client
        if client is None:
            raise TemporaryDeliveryError(
                f"MQTT broker {self.address.redacted} not connected; {topic} not published"
            )
        try:
            # aiomqtt's own timeout is disabled (inf); ours covers the whole call
            await asyncio.wait_for(
                client.publish(topic, payload, qos=1, retain=retain, timeout=float("inf")),
                timeout,
            )
        except TimeoutError as e:
            raise TemporaryDeliveryError(
                f"MQTT broker {self.address.redacted}: no PUBACK for {topic} within {timeout} s"
            ) from e
        except aiomqtt.MqttError as e:
            raise TemporaryDeliveryError(
                f"MQTT broker {self.address.redacted}: publishing to {topic} failed: {e}"
            ) from e

    async def deliver(self, topic: str, payload: bytes) -> None:
        """Publish for the outbox relay (same as `publish` with the default timeout)."""
        await self.publish(topic, payload)

    # -----------------------------------------------------------------------------------------

    def _check_prefixes(self) -> None:
        seen: dict[str, str] = {}
        for aggregator, prefix in self._prefixes.items():
            key = f"participants[{aggregator}].mqtt_prefix"
            try:
                validate_prefix(prefix)
            except TopicError as e:
                raise ConfigError(f"{key}: {e}") from e
            if prefix in seen:
                raise ConfigError(f"{key}: prefix {prefix!r} is also {seen[prefix]}'s prefix")
            seen[prefix] = aggregator

    def _new_client(self) -> aiomqtt.Client:
        client = new_client(
            self.address,
            self.client_id,
            clean_session=False,
            keepalive=self._keepalive,
            timeout=self._connect_timeout,
            tls_context=self._ssl_context,
        )
        # aiomqtt warns on every publish once more than 10 await their PUBACK; the outbox
        # relay keeps up to a whole batch in flight on purpose
        client.pending_calls_threshold = PENDING_CALLS_WARNING
        return client

    async def _run(self) -> None:
        """Connect, subscribe, read acks; on any connection loss wait and do it again."""
        failures = 0
        while not self._stopping:
            # A fresh client per connection: no paho state survives a broken one. A publish
            # that was in flight has already failed to its caller, who retries it.
            client = self._new_client()
            try:
                async with client:
                    for prefix in self._prefixes.values():
                        await client.subscribe(ack_filter(prefix), qos=1)
                    self._client = client
                    self._connected.set()
                    self._first_attempt.set()
                    self.connections += 1
                    failures = 0
                    log.info(
                        "MQTT link %s connected to %s, listening on %d ack filter(s)",
                        self.client_id,
                        self.address.redacted,
                        len(self._prefixes),
                    )
                    async for message in client.messages:
                        await self._received(message)
            except aiomqtt.MqttError as e:
                failures += 1
                # warn on the first failure and then now and then, not on every retry
                level = logging.WARNING if failures == 1 or failures % 20 == 0 else logging.DEBUG
                log.log(
                    level,
                    "MQTT link %s to %s lost or refused (%d in a row): %s",
                    self.client_id,
                    self.address.redacted,
                    failures,
                    e,
                )
            except Exception:
                # a bug, not the network: log it, but keep the link alive for the next try
                failures += 1
                log.exception("MQTT link %s failed unexpectedly; reconnecting", self.client_id)
            finally:
                self._client = None
                self._connected.clear()
            self._first_attempt.set()
            await asyncio.sleep(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        # exponential with jitter so a fleet of gateways does not reconnect in lockstep
        ceiling = min(self._reconnect_max, self._reconnect_min * 2 ** max(failures - 1, 0))
        return random.uniform(ceiling / 2, ceiling)

    async def _received(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        try:
            ack = self._decode(topic, payload)
        except Rejection as rejection:
            log.warning("MQTT link %s: bad ack on %s: %s", self.client_id, topic, rejection.text)
            if self._on_bad_ack is not None:
                try:
                    await self._on_bad_ack(topic, payload, rejection)
                except Exception:
                    log.exception("MQTT link %s: on_bad_ack failed for %s", self.client_id, topic)
            return
        if self._on_ack is None:
            return
        try:
            await self._on_ack(ack)
        except Exception:
            log.exception(
                "MQTT link %s: on_ack failed for ack %s (%s) from %s",
                self.client_id,
                ack.message_id,
                ack.status,
                ack.aggregator,
            )

    def _decode(self, topic: str, payload: bytes) -> SetpointAck:
        for aggregator, prefix in self._prefixes.items():
            try:
                resource = parse_ack_topic(prefix, topic)
            except TopicError:
                continue
            return decode_ack(payload, aggregator=aggregator, resource=resource)
        raise PayloadRejection(
            MqttReason.UNKNOWN_TOPIC,
            f"gridgate topic tree: {topic!r} is under no aggregator's ack prefix",
        )


STOP_TIMEOUT = 5.0  # s to wait for a clean disconnect when stopping


async def cancel_within(task: asyncio.Task[None], what: str) -> None:
    """Cancel the task that holds an aiomqtt client and wait for it, at most STOP_TIMEOUT s.

    aiomqtt waits for the broker's answer to DISCONNECT without a timeout, and a client
    cancelled while a publish is in flight may never get it: past the timeout the task is
    left behind, so that stopping never hangs."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
    if not done:
        log.warning(
            "%s: no clean disconnect from the broker in %.0f s; dropped", what, STOP_TIMEOUT
        )
        return
    with contextlib.suppress(asyncio.CancelledError):
        await task
