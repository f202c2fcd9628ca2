"""ESMP lexical forms: the two date-time forms and fixed-length durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from adapters.cim.values import (
    format_created,
    format_decimal,
    format_duration,
    format_interval_time,
    format_zoned,
    parse_created,
    parse_duration,
    parse_interval_time,
    parse_zoned,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("PT15M", timedelta(minutes=15)),
        ("PT60M", timedelta(hours=1)),
        ("PT21M", timedelta(minutes=21)),
        ("PT1H", timedelta(hours=1)),
        ("P1D", timedelta(days=1)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT30S", timedelta(seconds=30)),
    ],
)
def test_durations_of_any_resolution(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["P1M", "P1Y", "PT", "P", "PT15", "15M", "-PT15M", "PT1.5M"])
def test_durations_without_fixed_length_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_durations_are_written_as_esmp_does() -> None:
    assert format_duration(timedelta(minutes=15)) == "PT15M"
    assert format_duration(timedelta(hours=1)) == "PT60M"
    assert format_duration(timedelta(days=1)) == "P1D"
    assert format_duration(timedelta(seconds=90)) == "PT90S"
    with pytest.raises(ValueError, match="positive"):
        format_duration(timedelta(0))


def test_two_date_time_forms() -> None:
    """NOTES §2: createdDateTime has seconds, interval ends have none; both UTC."""
    assert parse_created("2022-02-04T13:14:13Z") == datetime(2022, 2, 4, 13, 14, 13, tzinfo=UTC)
    assert parse_interval_time("2022-02-04T13:15Z") == datetime(2022, 2, 4, 13, 15, tzinfo=UTC)
    with pytest.raises(ValueError, match="hh:mm:ssZ"):
        parse_created("2022-02-04T13:14Z")
    with pytest.raises(ValueError, match="hh:mmZ"):
        parse_interval_time("2022-02-04T13:15:30Z")
    with pytest.raises(ValueError, match="day is out of range"):
        parse_interval_time("2022-02-30T13:15Z")
    cet = timezone(timedelta(hours=1))
    assert format_created(datetime(2022, 2, 4, 14, 14, 13, 5, tzinfo=cet)) == "2022-02-04T13:14:13Z"
    assert format_interval_time(datetime(2022, 2, 4, 14, 15, tzinfo=cet)) == "2022-02-04T13:15Z"


def test_zoned_date_times_of_61968() -> None:
    assert parse_zoned("2026-11-28T01:15:00+01:00") == datetime(2026, 11, 28, 0, 15, tzinfo=UTC)
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_zoned("2026-11-28T01:15:00")
    assert format_zoned(datetime(2026, 11, 28, 0, 15, tzinfo=UTC)) == "2026-11-28T00:15:00Z"


def test_decimals_are_written_as_they_are() -> None:
    assert format_decimal(Decimal("10.000")) == "10.000"
    assert format_decimal(Decimal("1E+3")) == "1000"
    with pytest.raises(ValueError, match="finite"):
        format_decimal(Decimal("NaN"))
