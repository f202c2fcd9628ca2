"""The MQTT topic tree between gridgate and the aggregators' control centres.

Each aggregator has one topic prefix (its ACL root on the broker):

    {prefix}/{resource}/cmd/setpoint    gridgate → control centre, QoS 1, never retained
    {prefix}/{resource}/ack             control centre → gridgate, QoS 1

A prefix is one or more non-empty levels without wildcards; a resource id is one level.
"""

from __future__ import annotations

_WILDCARDS = ("+", "#")


class TopicError(ValueError):
    """A prefix, resource id or topic breaks the topic-tree rules."""


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is a usable topic prefix, else raise TopicError."""
    if not prefix:
        raise TopicError("MQTT 3.1.1 §4.7.3: a topic prefix must not be empty")
    if any(w in prefix for w in _WILDCARDS):
        raise TopicError(
            f"MQTT 3.1.1 §4.7.1: topic prefix {prefix!r} must not contain the wildcards + or #"
        )
    if "\x00" in prefix:
        raise TopicError(f"MQTT 3.1.1 §4.7.3: topic prefix {prefix!r} must not contain NUL")
    if prefix.startswith("$"):
        # §4.7.2: topics starting with $ are the broker's own ($SYS); wildcards never match them
        raise TopicError(f"MQTT 3.1.1 §4.7.2: topic prefix {prefix!r} must not start with $")
    if any(level == "" for level in prefix.split("/")):
        raise TopicError(
            f"gridgate topic tree: topic prefix {prefix!r} must not have empty levels "
            "(no leading, trailing or doubled /)"
        )
    return prefix


def validate_resource(resource: str) -> str:
    """Return `resource` if it can be one topic level, else raise TopicError."""
    if not resource or "/" in resource or "\x00" in resource:
        raise TopicError(
            f"gridgate topic tree: resource id {resource!r} must be one non-empty topic level"
        )
    if any(w in resource for w in _WILDCARDS):
        raise TopicError(
            f"MQTT 3.1.1 §4.7.1: resource id {resource!r} must not contain the wildcards + or #"
        )
    return resource


def setpoint_topic(prefix: str, resource: str) -> str:
    """Return the topic gridgate publishes `resource`'s setpoints on."""
    return f"{validate_prefix(prefix)}/{validate_resource(resource)}/cmd/setpoint"


def setpoint_filter(prefix: str) -> str:
    """Return the filter a control centre subscribes to for all its resources' setpoints."""
    return f"{validate_prefix(prefix)}/+/cmd/setpoint"


def ack_topic(prefix: str, resource: str) -> str:
    """Return the topic a control centre acknowledges `resource`'s setpoints on."""
    return f"{validate_prefix(prefix)}/{validate_resource(resource)}/ack"


def ack_filter(prefix: str) -> str:
    """Return the filter gridgate subscribes to for one aggregator's acks."""
    return f"{validate_prefix(prefix)}/+/ack"


def parse_ack_topic(prefix: str, topic: str) -> str:
    """Return the resource id of an ack `topic` under `prefix`; raise TopicError otherwise."""
    return _parse(prefix, topic, "ack")


def parse_setpoint_topic(prefix: str, topic: str) -> str:
    """Return the resource id of a setpoint `topic` under `prefix`; raise TopicError otherwise."""
    return _parse(prefix, topic, "cmd/setpoint")


def _parse(prefix: str, topic: str, suffix: str) -> str:
    head = validate_prefix(prefix) + "/"
    tail = "/" + suffix
    if not (topic.startswith(head) and topic.endswith(tail)):
        raise TopicError(f"gridgate topic tree: {topic!r} is not {head}<resource>{tail}")
    resource = topic[len(head) : len(topic) - len(tail)]
    try:
        return validate_resource(resource)
    except TopicError as e:
        raise TopicError(f"gridgate topic tree: {topic!r} is not {head}<resource>{tail}") from e
