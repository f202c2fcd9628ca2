"""Install the MQTT adapter (entry point `gridgate.adapters: mqtt`): setpoints out, acks in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.mqtt.payloads import encode_setpoint
from adapters.mqtt.topics import setpoint_topic
from gateway.model import Setpoint

if TYPE_CHECKING:
    from gateway.app import Gateway, Registry


class MqttSetpoints:
    """The setpoint egress: topic `{prefix}/{resource}/cmd/setpoint`, JSON payload."""

    channel = "mqtt"

    def destination(self, prefix: str, resource: str) -> str:
        return setpoint_topic(prefix, resource)

    def encode(self, setpoint: Setpoint) -> bytes:
        return encode_setpoint(setpoint)


def install(registry: Registry) -> None:
    from adapters.mqtt.broker import EmbeddedBroker
    from adapters.mqtt.client import MqttLink

    registry.setpoints = MqttSetpoints()
    settings = registry.settings.mqtt
    prefixes = {
        p.id: p.mqtt_prefix for p in registry.directory.participants.values() if p.mqtt_prefix
    }

    async def start(gateway: Gateway) -> None:
        url = settings.url
        if url == "embedded":
            broker = EmbeddedBroker()
            await broker.start()
            registry.extras["mqtt_broker"] = broker
            url = broker.url
        link = MqttLink(
            url,
            client_id=settings.client_id,
            on_ack=gateway.pipeline.record_ack,
            on_bad_ack=gateway.pipeline.record_bad_ack,
            ack_prefixes=prefixes,
        )
        await link.start()
        registry.extras["mqtt_link"] = link
        registry.deliverers["mqtt"] = link

    async def stop(_: Gateway) -> None:
        link = registry.extras.pop("mqtt_link", None)
        if link is not None:
            await link.stop()
        broker = registry.extras.pop("mqtt_broker", None)
        if broker is not None:
            await broker.stop()

    registry.on_start.append(start)
    registry.on_stop.append(stop)
