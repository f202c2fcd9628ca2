"""First-cut grid check: accepted power per congestion point and ISP stays within the limit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.gridcheck import CapacityLimitCheck, Outcome
from gateway.model import Envelope, FlexOrder, PowerIsp, Role
from gateway.store.models import LedgerEntry

CP = "ean.871685900012636543"
PERIOD = date(2026, 11, 27)


def order(
    powers: dict[int, int], *, message_id: str = "m1", cp: str = CP, period: date = PERIOD
) -> FlexOrder:
    return FlexOrder(
        envelope=Envelope(
            message_id, "c1", "dso.example.com", "agr.example.com", Role.DSO, datetime.now(UTC)
        ),
        isp_duration=timedelta(minutes=15),
        time_zone="Europe/Amsterdam",
        period=period,
        congestion_point=cp,
        isps=tuple(PowerIsp(i, p) for i, p in powers.items()),
        price=Decimal("1"),
        currency="EUR",
        order_reference="o",
    )


def test_an_order_within_the_limit_is_accepted_and_reserved() -> None:
    check = CapacityLimitCheck({CP: 1000})
    decision = check.check(order({1: 600, 2: 0, 3: -400}), origin="dso")
    assert decision.outcome is Outcome.ACCEPTED
    assert check.accepted_power(CP, PERIOD, 1) == 600
    assert check.accepted_power(CP, PERIOD, 3) == -400
    assert {(r[2], r[3]) for r in decision.reservations} == {(1, 600), (3, -400)}


def test_the_sum_with_accepted_orders_is_what_counts_and_the_reason_names_isp_limit_excess() -> (
    None
):
    check = CapacityLimitCheck({CP: 1000})
    assert check.check(order({5: 700, 6: 700}, message_id="a"), origin="dso").accepted
    decision = check.check(order({5: 200, 6: 450}, message_id="b"), origin="dso")
    assert decision.outcome is Outcome.REJECTED
    assert decision.binding is not None and decision.binding.isp == 6
    assert "ISP 6" in decision.reason
    assert "limit 1000 W" in decision.reason and "by 150 W" in decision.reason
    # a rejected order reserves nothing
    assert check.accepted_power(CP, PERIOD, 5) == 700


def test_isps_and_periods_are_separate_ledgers() -> None:
    check = CapacityLimitCheck({CP: 1000})
    assert check.check(order({1: 1000}, message_id="a"), origin="dso").accepted
    assert check.check(order({2: 1000}, message_id="b"), origin="dso").accepted
    assert check.check(
        order({1: 1000}, message_id="c", period=PERIOD + timedelta(days=1)), origin="dso"
    ).accepted
    assert not check.check(order({1: 1}, message_id="d"), origin="dso").accepted


def test_opposite_orders_offset_each_other() -> None:
    check = CapacityLimitCheck({CP: 1000})
    assert check.check(order({1: 900}, message_id="a"), origin="dso").accepted
    assert check.check(order({1: -1500}, message_id="b"), origin="dso").accepted
    assert check.accepted_power(CP, PERIOD, 1) == -600


def test_release_returns_the_headroom() -> None:
    check = CapacityLimitCheck({CP: 1000})
    first = check.check(order({1: 1000}, message_id="a"), origin="dso")
    assert first.accepted and first.reservation is not None
    check.release(first.reservation)
    assert check.check(order({1: 1000}, message_id="b"), origin="dso").accepted


def test_a_reused_message_id_is_checked_like_any_other_order() -> None:
    """A MessageID is unique per recipient only: the same id to another AGR is a new order."""
    check = CapacityLimitCheck({CP: 1000})
    assert check.check(order({1: 800}, message_id="x"), origin="dso").accepted
    again = check.check(order({1: 800}, message_id="x"), origin="dso")
    assert not again.accepted and "by 600 W" in again.reason
    assert check.accepted_power(CP, PERIOD, 1) == 800


def test_an_unknown_congestion_point_is_rejected_never_accepted_unchecked() -> None:
    check = CapacityLimitCheck({CP: 1000})
    decision = check.check(order({1: 1}, cp="ean.000000000000"), origin="dso")
    assert decision.outcome is Outcome.REJECTED and "no grid limit" in decision.reason


async def test_the_ledger_is_rebuilt_from_the_database(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(LedgerEntry),
            [
                {
                    "congestion_point": CP,
                    "period": PERIOD,
                    "isp": 7,
                    "power": 900,
                    "order_message_id": "old",
                    "origin": "dso",
                },
            ],
        )
    check = CapacityLimitCheck({CP: 1000})
    await check.load(engine)
    assert check.accepted_power(CP, PERIOD, 7) == 900
    assert not check.check(order({7: 200}, message_id="new"), origin="dso").accepted


def test_the_reason_gives_the_isp_in_the_markets_local_time() -> None:
    check = CapacityLimitCheck({CP: 1000})
    decision = check.check(order({69: 2000}), origin="dso")
    assert "ISP 69 (2026-11-27T17:00+01:00)" in decision.reason


def test_the_headroom_reported_counts_this_order() -> None:
    check = CapacityLimitCheck({CP: 1000})
    assert "least headroom left 400 W" in check.check(order({2: 600}), origin="dso").reason
