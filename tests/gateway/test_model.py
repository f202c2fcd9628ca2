"""Periods and ISPs in the market's time zone; sharing an order among resources."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from gateway.config import ResourceSettings
from gateway.model import Envelope, FlexOrder, PowerIsp, Role, isp_count, isp_start
from gateway.pipeline import split_power

Q = timedelta(minutes=15)
CP = "ean.871685900012636543"


@pytest.mark.parametrize(
    ("day", "expected"),
    [(date(2026, 11, 27), 96), (date(2026, 3, 29), 92), (date(2026, 10, 25), 100)],
)
def test_a_day_has_92_96_or_100_isps_of_15_minutes(day: date, expected: int) -> None:
    assert isp_count(day, "Europe/Amsterdam", Q) == expected


def test_isp_starts_follow_the_local_day_across_dst() -> None:
    # 25 Oct 2026: the local day starts 22:00 UTC the evening before (CEST, +02:00)
    assert isp_start(date(2026, 10, 25), "Europe/Amsterdam", Q, 1) == datetime(
        2026, 10, 24, 22, 0, tzinfo=UTC
    )
    # ISP 100 is the last quarter hour, 23:45 CET = 22:45 UTC
    assert isp_start(date(2026, 10, 25), "Europe/Amsterdam", Q, 100) == datetime(
        2026, 10, 25, 22, 45, tzinfo=UTC
    )
    assert isp_count(date(2026, 11, 27), "America/Toronto", Q) == 96


def resource(rid: str, lo: int, hi: int) -> ResourceSettings:
    return ResourceSettings(
        id=rid, connection_ean="ean.871685900000000101", congestion_point=CP, min_w=lo, max_w=hi
    )


def order(powers: dict[int, int]) -> FlexOrder:
    return FlexOrder(
        envelope=Envelope("m", "c", "d.example.com", "a.example.com", Role.DSO, datetime.now(UTC)),
        isp_duration=Q,
        time_zone="Europe/Amsterdam",
        period=date(2026, 11, 27),
        congestion_point=CP,
        isps=tuple(PowerIsp(i, p) for i, p in powers.items()),
        price=Decimal("1"),
        currency="EUR",
        order_reference="o",
    )


@pytest.mark.parametrize("power", [-100_001, -7, 1, 99_999, 250_000])
def test_shares_are_integer_watts_that_add_up_to_the_order(power: int) -> None:
    resources = (
        resource("a", -100_000, 100_000),
        resource("b", 0, 70_000),
        resource("c", 0, 30_000),
    )
    shares = split_power(order({5: power}), resources)
    assert sum(s[0].power for s in shares if s) == power
    assert all(isinstance(s[0].power, int) for s in shares if s)


def test_shares_follow_the_power_range_and_skip_isps_without_power() -> None:
    resources = (resource("a", -100_000, 100_000), resource("b", 0, 100_000))
    shares = split_power(order({1: 0, 2: -90_000, 3: 30_000}), resources)
    assert [(i.start.isoformat(), i.power) for i in shares[0]] == [
        ("2026-11-26T23:15:00+00:00", -60_000),
        ("2026-11-26T23:30:00+00:00", 20_000),
    ]
    assert [i.power for i in shares[1]] == [-30_000, 10_000]
