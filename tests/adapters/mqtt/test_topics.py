from __future__ import annotations

import pytest

from adapters.mqtt.topics import (
    TopicError,
    ack_filter,
    ack_topic,
    parse_ack_topic,
    parse_setpoint_topic,
    setpoint_filter,
    setpoint_topic,
)


def test_topic_tree() -> None:
    assert setpoint_topic("hub/v1/agr1", "bat-17") == "hub/v1/agr1/bat-17/cmd/setpoint"
    assert ack_topic("hub/v1/agr1", "bat-17") == "hub/v1/agr1/bat-17/ack"
    assert ack_filter("hub/v1/agr1") == "hub/v1/agr1/+/ack"
    assert setpoint_filter("hub/v1/agr1") == "hub/v1/agr1/+/cmd/setpoint"


def test_parse_ack_topic_round_trips() -> None:
    assert parse_ack_topic("hub/v1/agr1", ack_topic("hub/v1/agr1", "bat-17")) == "bat-17"
    assert parse_setpoint_topic("p", setpoint_topic("p", "r")) == "r"


@pytest.mark.parametrize(
    "topic",
    [
        "hub/v1/agr2/bat-17/ack",  # another aggregator's prefix
        "hub/v1/agr1/ack",  # no resource level
        "hub/v1/agr1/site/bat-17/ack",  # two levels where the resource is one
        "hub/v1/agr1/bat-17/cmd/setpoint",  # not an ack
        "hub/v1/agr1//ack",  # empty resource
        "hub/v1/agr10/bat-17/ack",  # prefix is a string prefix but not a level prefix
    ],
)
def test_parse_ack_topic_rejects_topics_outside_the_tree(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_ack_topic("hub/v1/agr1", topic)


@pytest.mark.parametrize(
    ("prefix", "rule"),
    [
        ("", "must not be empty"),
        ("hub/+/agr1", "wildcards"),
        ("hub/#", "wildcards"),
        ("/hub/agr1", "empty levels"),
        ("hub/agr1/", "empty levels"),
        ("hub//agr1", "empty levels"),
        ("$SYS/agr1", "must not start with $"),
    ],
)
def test_bad_prefixes_are_refused_naming_the_rule(prefix: str, rule: str) -> None:
    with pytest.raises(TopicError, match=rule.replace("$", r"\$")):
        ack_filter(prefix)
    with pytest.raises(TopicError):
        setpoint_topic(prefix, "r1")


@pytest.mark.parametrize("resource", ["", "a/b", "a+", "#"])
def test_bad_resource_ids_are_refused(resource: str) -> None:
    with pytest.raises(TopicError, match="resource id"):
        setpoint_topic("hub/agr1", resource)
    with pytest.raises(TopicError):
        ack_topic("hub/agr1", resource)
