"""An in-process MQTT 3.1.1 broker (amqtt) for `gridgate demo` and tests.

Not for production: amqtt speaks no MQTT 5, leaks retained messages across subscriptions,
never matches `$share/...` filters and does not downgrade QoS (see docs/mqtt.md). It also
drops the session of an anonymous client when it disconnects, so QoS 1 acks sent while
gridgate is away are lost here; a real broker (Mosquitto) keeps them.
"""

from __future__ import annotations

import errno
import logging
import socket

from amqtt.broker import Broker
from amqtt.errors import BrokerError

from gateway.errors import GridgateError

log = logging.getLogger(__name__)

_HOST = "127.0.0.1"
_BIND_ATTEMPTS = 5


class EmbeddedBrokerError(GridgateError):
    """The embedded broker could not start."""


class EmbeddedBroker:
    """An amqtt broker on a loopback port, anonymous clients allowed."""

    def __init__(self) -> None:
        self._broker: Broker | None = None
        self._host = _HOST
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the embedded broker is not running")
        return self._port

    @property
    def url(self) -> str:
        """The `mqtt://host:port` URL clients connect to."""
        return f"mqtt://{self._host}:{self.port}"

    async def start(self, host: str = _HOST, port: int = 0) -> None:
        """Start listening on `host`:`port`; port 0 picks a free port first."""
        if self._broker is not None:
            raise RuntimeError(f"the embedded broker already runs on {self.url}")
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - this is the check against it
            # amqtt's own default is 0.0.0.0:1883; a demo broker must not face the network
            raise EmbeddedBrokerError(
                f"embedded broker: refusing to bind to all interfaces ({host!r}); "
                "use a loopback address"
            )
        # A free port can be taken between the probe and amqtt's bind; try a few times.
        attempts = _BIND_ATTEMPTS if port == 0 else 1
        for attempt in range(1, attempts + 1):
            chosen = port or _free_port(host)
            broker = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"{host}:{chosen}"}},
                    "plugins": {
                        "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                            "allow_anonymous": True
                        },
                    },
                }
            )
            try:
                await broker.start()
            except BrokerError as e:
                in_use = _caused_by_address_in_use(e)
                if in_use and attempt < attempts:
                    log.debug("embedded broker: port %s was taken, trying another", chosen)
                    continue
                raise EmbeddedBrokerError(
                    f"embedded broker: cannot listen on {host}:{chosen}: {e}"
                ) from e
            self._broker, self._host, self._port = broker, host, chosen
            log.info("embedded MQTT broker listening on %s", self.url)
            return

    async def stop(self) -> None:
        """Close every session and the listener."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        await broker.shutdown()
        log.info("embedded MQTT broker on %s:%s stopped", self._host, self._port)
        self._port = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _caused_by_address_in_use(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.EADDRINUSE:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
