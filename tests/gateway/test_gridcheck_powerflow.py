"""The grid-security check on an exact AC power flow, on the CIGRE MV grid.

Real power flows throughout: the grid is pandapower's CIGRE MV benchmark (15 buses, two
feeders under Trafo 0-1 and Trafo 0-12) loaded through gateway.gridcheck.grid, the
operating point scaled to 60 % so that no limit is broken before the orders.
"""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.gridcheck import CapacityLimitCheck, Conflict, Outcome
from gateway.gridcheck.grid import AcSolver, GridModel, Solution, from_pandapower
from gateway.gridcheck.powerflow import (
    ALPHA_TOL,
    METHOD_AC,
    METHOD_DEFAULT_LIMIT,
    METHOD_FAIL_SAFE,
    CongestionPointGrid,
    PowerFlowCheck,
    TrafficLight,
    ZoneLimits,
    congestion_points_from,
)
from gateway.model import DPrognosis, Envelope, FlexOrder, PowerIsp, Role, isp_start
from gateway.routing import Directory
from gateway.store.models import LedgerEntry, MessageRecord
from tests.gateway.conftest import public_b64, secret_b64

MODEL_TIME = datetime(2026, 11, 26, 6, tzinfo=UTC)
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
PERIOD = date(2026, 11, 27)
TZ = "Europe/Amsterdam"
ISP = timedelta(minutes=15)
ROLES = {"dso-1": Role.DSO, "iso-1": Role.ISO, "agr-1": Role.AGR}
PROFILE = 0.6  # the model's operating point is scaled to this in every ISP


def cp(bus: int) -> str:
    """The congestion point whose flexibility sits at CIGRE MV bus `bus`."""
    return f"ean.8716859000{bus:08d}"


@pytest.fixture(scope="module")
def cigre() -> GridModel:
    import pandapower.networks as pn

    net = pn.create_cigre_network_mv(with_der="all")
    return from_pandapower(net, zone="mv", version="cigre-mv-1", created=MODEL_TIME)


def make_check(
    model: GridModel,
    *,
    clock: Callable[[], datetime] = lambda: NOW,
    with_model: bool = True,
    **limits: object,
) -> PowerFlowCheck:
    zone = dataclasses.replace(
        ZoneLimits("mv", "dso-1", v_min=0.90, load_profile=(PROFILE,)),
        **limits,
    )
    sites = {cp(i): CongestionPointGrid("mv", ((f"Bus {i}", 1.0),)) for i in range(1, 15)}
    return PowerFlowCheck(
        {"mv": zone},
        sites,
        roles=ROLES,
        clock=clock,
        models=[model] if with_model else [],
    )


def order(
    bus: int,
    powers: dict[int, int],
    *,
    message_id: str = "m1",
    period: date = PERIOD,
    to: str = "agr.example.com",
) -> FlexOrder:
    return FlexOrder(
        envelope=Envelope(message_id, "c1", "dso.example.com", to, Role.DSO, NOW),
        isp_duration=ISP,
        time_zone=TZ,
        period=period,
        congestion_point=cp(bus),
        isps=tuple(PowerIsp(i, p) for i, p in powers.items()),
        price=Decimal("1"),
        currency="EUR",
        order_reference="o",
    )


def ac_safe(model: GridModel, bus: int, power: float, zone: ZoneLimits) -> bool:
    """Independent of the check: the AC flow with `power` W more at `bus` within limits."""
    p = model.base_p_w * PROFILE
    p[model.node(f"Bus {bus}").index] += power
    sol = AcSolver(model).solve(p[None], (model.base_q_var * PROFILE)[None])
    if not sol.converged[0]:
        return False
    u = sol.u_pu[0]
    ok = np.nanmax(sol.loading[0]) <= 1 - zone.thermal_margin
    ok &= np.nanmin(u) >= zone.v_min + zone.voltage_margin
    ok &= np.nanmax(u) <= zone.v_max - zone.voltage_margin
    if zone.interface_limit_w is not None:
        ok &= abs(sol.interface_p_w[0]) <= zone.interface_limit_w * (1 - zone.thermal_margin)
    return bool(ok)


# -- accepted, rejected, curtailed: each with its binding element ------------------------


def test_an_order_the_grid_carries_is_accepted_reserved_and_explained(cigre: GridModel) -> None:
    check = make_check(cigre)
    decision = check.check(order(13, {10: 1_000_000, 11: 0, 12: -500_000}), origin="dso-1")
    assert decision.outcome is Outcome.ACCEPTED and decision.method == METHOD_AC
    assert decision.fraction == 1.0
    assert decision.model_version == "cigre-mv-1"
    assert decision.base_state_time == MODEL_TIME  # no forecast: the model's time stamp
    assert {(r[2], r[3]) for r in decision.reservations} == {(10, 1_000_000), (12, -500_000)}
    assert check.accepted_power(cp(13), PERIOD, 10) == 1_000_000
    b = decision.binding
    assert b is not None and b.margin > 0  # the least margin left, always named
    assert b.element_type in ("line", "transformer", "node", "interface")
    detail = decision.audit_detail()
    assert detail["model_version"] == "cigre-mv-1"
    assert detail["base_state_time"] == MODEL_TIME.isoformat()
    assert detail["binding"]["element"] == b.element and "safety_margin" in detail["binding"]


def test_a_line_overload_rejects_and_names_the_line(cigre: GridModel) -> None:
    check = make_check(cigre)
    decision = check.check(order(5, {10: 3_000_000}), origin="dso-1")
    assert decision.outcome is Outcome.REJECTED and decision.method == METHOD_AC
    b = decision.binding
    assert b is not None
    assert (b.element, b.element_type, b.metric, b.isp) == ("Line 2-3", "line", "loading", 10)
    assert b.predicted > 1.0 and b.limit == pytest.approx(0.98) and b.margin < 0
    assert b.safety_margin == pytest.approx(0.02)
    assert "line Line 2-3 at 100." in decision.reason and "(limit 98.0 %)" in decision.reason
    assert "ISP 10 (2026-11-27T02:15+01:00)" in decision.reason
    assert decision.reservations == () and check.accepted_power(cp(5), PERIOD, 10) == 0


def test_a_transformer_overload_rejects_and_names_the_transformer(cigre: GridModel) -> None:
    decision = make_check(cigre).check(order(12, {10: 12_000_000}), origin="dso-1")
    assert decision.outcome is Outcome.REJECTED
    b = decision.binding
    assert b is not None and (b.element, b.element_type) == ("Trafo 0-12", "transformer")
    assert b.metric == "loading" and b.predicted > 0.98


def test_an_undervoltage_rejects_and_names_the_node(cigre: GridModel) -> None:
    check = make_check(cigre, v_min=0.96)
    decision = check.check(order(11, {10: 2_000_000}), origin="dso-1")
    assert decision.outcome is Outcome.REJECTED
    b = decision.binding
    assert b is not None and (b.element, b.element_type, b.metric) == ("Bus 11", "node", "v_min")
    assert b.limit == pytest.approx(0.962) and b.predicted < 0.962 and b.margin < 0
    assert "node Bus 11 at 0.95" in decision.reason


def test_an_overvoltage_from_production_rejects_and_names_the_node(cigre: GridModel) -> None:
    check = make_check(cigre, v_max=1.03)
    decision = check.check(order(14, {10: -4_000_000}), origin="dso-1")
    assert decision.outcome is Outcome.REJECTED
    b = decision.binding
    assert b is not None and (b.element, b.element_type, b.metric) == ("Bus 14", "node", "v_max")
    assert b.limit == pytest.approx(1.028) and b.predicted > 1.028


def test_the_tso_dso_interface_limit_rejects_and_is_named(cigre: GridModel) -> None:
    check = make_check(cigre, interface_limit_w=28_000_000)
    decision = check.check(order(13, {10: 5_000_000}), origin="iso-1")
    assert decision.outcome is Outcome.REJECTED
    b = decision.binding
    assert b is not None and (b.element, b.element_type, b.metric) == (
        "Bus 0",
        "interface",
        "interface_mw",
    )
    # MW, enforced limit = 28 MW less the 2 % thermal margin
    assert b.limit == pytest.approx(27.44) and b.predicted > 27.44
    assert b.safety_margin == pytest.approx(0.56)
    assert "the TSO-DSO interface at Bus 0" in decision.reason


def test_a_curtailment_is_ac_safe_and_within_2_percent_of_the_ac_optimum(cigre: GridModel) -> None:
    check = make_check(cigre)
    decision = check.check(order(5, {10: 3_000_000}), origin="dso-1", allow_curtail=True)
    assert decision.outcome is Outcome.CURTAILED and decision.accepted
    alpha = decision.fraction
    assert alpha is not None and 0 < alpha < 1
    held = math.trunc(3_000_000 * alpha)
    assert decision.reservations == ((cp(5), PERIOD, 10, held),)
    assert check.accepted_power(cp(5), PERIOD, 10) == held
    b = decision.binding
    assert b is not None and (b.element, b.element_type) == ("Line 2-3", "line")
    assert 0 <= b.margin < 0.01  # it binds: just inside its limit
    zone = ZoneLimits("mv", "dso-1", v_min=0.90)
    assert ac_safe(cigre, 5, held, zone)
    # the AC optimum, bisected on the solver directly
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-5:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ac_safe(cigre, 5, math.trunc(3_000_000 * mid), zone) else (lo, mid)
    assert alpha <= lo + 1e-9 and lo - alpha <= 0.02
    # the same order again holds what it held
    again = check.check(order(5, {10: 3_000_000}), origin="dso-1", allow_curtail=True)
    assert again.outcome is Outcome.CURTAILED and again.fraction == alpha
    assert again.reservations == () and check.accepted_power(cp(5), PERIOD, 10) == held


@pytest.mark.parametrize(("bus", "power"), [(1, -117_900_000), (5, 3_000_000), (11, 8_000_000)])
def test_the_curtailed_fraction_is_within_alpha_tol_of_the_ac_optimum(
    cigre: GridModel, bus: int, power: int
) -> None:
    """However far the model through the first AC flows is off (a big order far past a
    transformer's rating), the search ends only when AC brackets α within ALPHA_TOL."""
    decision = make_check(cigre).check(order(bus, {10: power}), origin="dso-1", allow_curtail=True)
    assert decision.outcome is Outcome.CURTAILED and decision.fraction is not None
    zone = ZoneLimits("mv", "dso-1", v_min=0.90)
    assert ac_safe(cigre, bus, math.trunc(power * decision.fraction), zone)
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-5:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ac_safe(cigre, bus, math.trunc(power * mid), zone) else (lo, mid)
    assert lo - ALPHA_TOL <= decision.fraction <= lo + 1e-9


def test_without_curtailment_a_partial_fit_is_rejected_naming_the_largest_fraction(
    cigre: GridModel,
) -> None:
    """A signed UFTP order cannot be changed: the sender learns roughly how much would fit,
    estimated along the order without more power flows (a line binds here: loading is
    convex in the order's power, so the estimate errs low), close to what a curtailment
    finds in AC."""
    curtailed = make_check(cigre).check(
        order(5, {10: 3_000_000}), origin="dso-1", allow_curtail=True
    )
    assert curtailed.fraction is not None
    check = make_check(cigre)
    decision = check.check(order(5, {10: 3_000_000}), origin="dso-1")
    assert decision.outcome is Outcome.REJECTED and decision.fraction is None
    pattern = r"roughly (0\.\d{3}) of it might fit \(ISP 10: (\d+) W\)"
    found = re.search(pattern, decision.reason)
    assert found is not None, decision.reason
    estimate = float(found[1])
    assert curtailed.fraction - 0.02 <= estimate <= curtailed.fraction + 0.0005
    # the watts of the unrounded estimate: within a rounding step of the printed one
    assert abs(int(found[2]) - 3_000_000 * estimate) <= 3_000_000 * 0.0005
    assert "not checked in AC" in decision.reason
    assert check.accepted_power(cp(5), PERIOD, 10) == 0


def count_flows(check: PowerFlowCheck) -> list[int]:
    """The number of AC flows each call of the zone's solver solves, in order."""
    solver = check._grids["mv"].solver
    real = solver.solve
    calls: list[int] = []

    def counted(p: np.ndarray, q: np.ndarray) -> Solution:
        calls.append(len(p))
        return real(p, q)

    solver.solve = counted  # type: ignore[method-assign]
    return calls


def test_a_check_costs_one_flow_per_isp_once_the_isps_state_is_known(cigre: GridModel) -> None:
    """A state no check has solved yet is solved first (a base that does not converge is a
    fail-safe case); after that the flow with the order is all a check needs."""
    check = make_check(cigre)
    flows = count_flows(check)
    assert check.check(order(13, {10: 500_000, 11: 500_000}), origin="dso-1").accepted
    assert flows == [2, 2]  # ISPs 10 and 11: base + ledger, then with the order
    assert check.check(order(13, {10: 500_000}, message_id="m2"), origin="dso-1").accepted
    assert flows == [2, 2, 1]  # the accepted flow is the next check's state
    flows.clear()
    rejected = check.check(order(5, {12: 4_000_000}, message_id="m3"), origin="dso-1")
    assert rejected.outcome is Outcome.REJECTED
    assert flows == [1, 1]  # the state of ISP 12, then with the order: no more for a reject
    flows.clear()
    curtailed = check.check(
        order(5, {12: 4_000_000}, message_id="m4"), origin="dso-1", allow_curtail=True
    )
    assert curtailed.outcome is Outcome.CURTAILED
    # with the order, AC at the chord's estimate, then around the model's crossing
    assert flows[0] == 1 and 2 <= len(flows) <= 4 and sum(flows) <= 6, flows


def test_a_flow_that_collapses_with_the_order_is_rejected(cigre: GridModel) -> None:
    decision = make_check(cigre).check(order(11, {10: 500_000_000}), origin="dso-1")
    assert decision.outcome is Outcome.REJECTED
    assert "does not converge" in decision.reason


def test_a_limit_broken_before_blocks_only_orders_that_make_it_worse(cigre: GridModel) -> None:
    """Bus 11 is below v_min = 0.985 before any order: relief passes, more load does not."""
    check = make_check(cigre, v_min=0.985)
    relief = check.check(order(11, {10: -300_000}, message_id="r"), origin="dso-1")
    assert relief.outcome is Outcome.ACCEPTED
    assert "already past its limit before this order" in relief.reason
    other_feeder = check.check(order(13, {10: 300_000}, message_id="o"), origin="dso-1")
    assert other_feeder.outcome is Outcome.ACCEPTED
    worse = check.check(order(6, {10: 300_000}, message_id="w"), origin="dso-1")
    assert worse.outcome is Outcome.REJECTED
    assert worse.binding is not None and worse.binding.metric == "v_min"
    assert "; no fraction of it is safe" in worse.reason  # any more load makes it worse
    # curtailing cannot help either: no curtailment to (nearly) nothing, AC names a bound
    cut = check.check(order(6, {10: 300_000}, message_id="w2"), origin="dso-1", allow_curtail=True)
    assert cut.outcome is Outcome.REJECTED and cut.reservation is None
    assert "less than about 0.5% of it is safe, too little to carry out" in cut.reason


def test_a_new_model_is_swapped_in_whole_and_an_unfit_one_refused(cigre: GridModel) -> None:
    check = make_check(cigre)
    assert check.check(order(5, {10: 2_000_000}, message_id="a"), origin="dso-1").accepted
    newer = dataclasses.replace(cigre, version="cigre-mv-2", created=NOW)
    check.set_model(newer)
    decision = check.check(order(13, {10: 1000}, message_id="b"), origin="dso-1")
    assert decision.model_version == "cigre-mv-2" and decision.base_state_time == NOW
    # the ledger carries over: feeder 1 is still as full
    assert not check.check(order(5, {10: 1_000_000}, message_id="c"), origin="dso-1").accepted
    renamed = dataclasses.replace(
        cigre,
        version="cigre-mv-3",
        nodes=tuple(dataclasses.replace(n, name=f"N{n.index}") for n in cigre.nodes),
    )
    with pytest.raises(ValueError, match="has no node 'Bus 1'"):
        check.set_model(renamed)
    assert check.model_of("mv") is newer


# -- fail safe -------------------------------------------------------------------------


def test_a_stale_model_rejects_what_it_cannot_check(cigre: GridModel) -> None:
    later = MODEL_TIME + timedelta(days=31)
    decision = make_check(cigre, clock=lambda: later).check(order(13, {10: 1}), origin="dso-1")
    assert decision.outcome is Outcome.REJECTED and decision.method == METHOD_FAIL_SAFE
    assert "744.0 h old (max_model_age_hours 720)" in decision.reason
    assert "no default_limit_w" in decision.reason


def test_a_stale_model_falls_back_to_the_pre_agreed_default_limit(cigre: GridModel) -> None:
    later = MODEL_TIME + timedelta(days=31)
    check = make_check(cigre, clock=lambda: later, default_limit_w=1_000_000)
    first = check.check(order(13, {10: 600_000}, message_id="a"), origin="dso-1")
    assert first.outcome is Outcome.ACCEPTED and first.method == METHOD_DEFAULT_LIMIT
    assert "pre-agreed default limit 1000000 W" in first.reason
    second = check.check(order(13, {10: 600_000}, message_id="b"), origin="dso-1")
    assert second.outcome is Outcome.REJECTED and second.method == METHOD_DEFAULT_LIMIT
    b = second.binding
    assert b is not None and (b.element, b.element_type) == (cp(13), "congestion_point")
    assert b.predicted == 1_200_000 and b.limit == 1_000_000


def test_a_stale_forecast_rejects_in_the_isps_it_covers(cigre: GridModel) -> None:
    check = make_check(cigre)
    made = NOW - timedelta(hours=48)
    check.set_forecast(cp(4), PERIOD, {10: 200_000}, time=made)
    stale = check.check(order(13, {10: 1000}, message_id="a"), origin="dso-1")
    assert stale.outcome is Outcome.REJECTED and stale.method == METHOD_FAIL_SAFE
    assert f"the forecast for {cp(4)} in ISP 10 is 48.0 h old" in stale.reason
    assert stale.base_state_time == made
    fine = check.check(order(13, {11: 1000}, message_id="b"), origin="dso-1")
    assert fine.outcome is Outcome.ACCEPTED and fine.base_state_time == MODEL_TIME


def test_a_base_state_that_does_not_converge_falls_back_or_rejects(cigre: GridModel) -> None:
    for default, expected in ((None, Outcome.REJECTED), (5_000_000, Outcome.ACCEPTED)):
        check = make_check(cigre, default_limit_w=default)
        check.set_forecast(cp(11), PERIOD, {10: 500_000_000}, time=NOW)
        decision = check.check(order(13, {10: 1_000_000}), origin="dso-1")
        assert decision.outcome is expected
        assert "does not converge" in decision.reason
        assert decision.method in (METHOD_FAIL_SAFE, METHOD_DEFAULT_LIMIT)


def test_a_base_that_does_not_converge_fails_safe_even_for_an_order_that_would_fix_it(
    cigre: GridModel,
) -> None:
    """The order's own flow converges and is within the limits, but the base it is added to
    does not converge: the inputs are suspect, so the check does not decide on AC."""
    check = make_check(cigre)
    check.set_forecast(cp(14), PERIOD, {10: 50_000_000}, time=NOW)
    assert check.traffic_light(cp(14), PERIOD, 10).colour is TrafficLight.RED
    decision = check.check(order(14, {10: -45_000_000}), origin="dso-1")
    assert decision.outcome is Outcome.REJECTED and decision.method == METHOD_FAIL_SAFE
    assert "does not converge" in decision.reason
    assert check.accepted_power(cp(14), PERIOD, 10) == 0


def test_an_unknown_zone_or_a_zone_without_model_is_never_accepted(cigre: GridModel) -> None:
    check = make_check(cigre)
    unknown = dataclasses.replace(order(13, {10: 1}), congestion_point="ean.000000000000")
    decision = check.check(unknown, origin="dso-1")
    assert decision.outcome is Outcome.REJECTED and "lies in no grid zone" in decision.reason
    no_model = make_check(cigre, with_model=False).check(order(13, {10: 1}), origin="dso-1")
    assert no_model.outcome is Outcome.REJECTED and "has no grid model" in no_model.reason


# -- the ledger ------------------------------------------------------------------------


def test_the_ledger_is_cumulative_per_isp_across_orders(cigre: GridModel) -> None:
    """An order over ISPs 10-12 and one over 12-14: ISP 12 carries both."""
    check = make_check(cigre)
    first = check.check(
        order(5, dict.fromkeys((10, 11, 12), 1_500_000), message_id="a"), origin="dso-1"
    )
    assert first.outcome is Outcome.ACCEPTED
    second = check.check(
        order(5, dict.fromkeys((12, 13, 14), 1_500_000), message_id="b"), origin="dso-1"
    )
    assert second.outcome is Outcome.REJECTED
    assert second.binding is not None and second.binding.isp == 12
    assert second.binding.element == "Line 2-3"
    third = check.check(
        order(5, dict.fromkeys((13, 14), 1_500_000), message_id="c"), origin="dso-1"
    )
    assert third.outcome is Outcome.ACCEPTED
    assert [check.accepted_power(cp(5), PERIOD, i) for i in (10, 12, 13)] == [1_500_000] * 3


def test_a_repeat_of_an_accepted_order_is_idempotent_per_origin_and_message_id(
    cigre: GridModel,
) -> None:
    check = make_check(cigre)
    first = check.check(order(13, {10: 2_000_000}, message_id="x"), origin="dso-1")
    again = check.check(order(13, {10: 2_000_000}, message_id="x"), origin="dso-1")
    assert again.outcome is Outcome.ACCEPTED
    assert again.reservations == () and again.reservation is None
    assert "already accepted" in again.reason
    assert check.accepted_power(cp(13), PERIOD, 10) == 2_000_000
    other = check.check(order(13, {10: 2_000_000}, message_id="x"), origin="iso-1")
    assert other.reservation is not None and other.reservation != first.reservation
    assert check.accepted_power(cp(13), PERIOD, 10) == 4_000_000


def test_release_and_cancel_give_the_headroom_back(cigre: GridModel) -> None:
    check = make_check(cigre)
    first = check.check(order(5, {10: 2_000_000}, message_id="a"), origin="dso-1")
    assert first.accepted and first.reservation is not None
    assert not check.check(order(5, {10: 1_000_000}, message_id="b"), origin="dso-1").accepted
    check.release(first.reservation)
    assert check.accepted_power(cp(5), PERIOD, 10) == 0
    assert check.check(order(5, {10: 2_000_000}, message_id="c"), origin="dso-1").accepted
    assert check.cancel("c", origin="dso-1", recipient="agr.example.com") == [
        (cp(5), PERIOD, 10, 2_000_000)
    ]
    assert check.cancel("c", origin="dso-1", recipient="agr.example.com") == []
    assert check.check(order(5, {10: 2_000_000}, message_id="d"), origin="iso-1").accepted


def test_a_release_that_leaves_an_order_unsafe_is_heard_and_found_by_revalidation(
    cigre: GridModel,
) -> None:
    """The ISO's down-regulation made room for the DSO's order; when the ISO's order is
    given back (its aggregator refused it), the DSO's order alone overloads Line 2-3."""
    check = make_check(cigre)
    heard: list[tuple[str, date | None]] = []
    check.listeners.append(lambda zone, period: heard.append((zone, period)))
    room = check.check(order(5, {10: -1_000_000}, message_id="iso"), origin="iso-1")
    assert room.accepted and room.reservation is not None
    alone = check.check(order(5, {10: 3_500_000}, message_id="dso"), origin="dso-1")
    assert alone.accepted  # +2.5 MW net
    assert check.revalidate("mv", PERIOD) == []
    check.release(room.reservation)
    assert heard == [("mv", PERIOD)]
    unsafe = check.revalidate("mv", PERIOD)
    assert [(u.order_message_id, u.origin, u.isp) for u in unsafe] == [("dso", "dso-1", 10)]
    assert unsafe[0].binding is not None and unsafe[0].binding.element == "Line 2-3"
    # a trial reservation given back leaves nothing to re-validate
    trial = check.check(order(13, {11: 100_000}, message_id="t"), origin="dso-1")
    assert trial.reservation is not None
    check.release(trial.reservation, notify=False)
    assert heard == [("mv", PERIOD)]


def test_an_isp_whose_orders_are_all_given_back_is_not_solved_again(cigre: GridModel) -> None:
    """The state of the base alone is kept apart from the ledger's: a release does not cost
    the next check a second power flow."""
    check = make_check(cigre)
    flows = count_flows(check)
    assert not check.check(order(5, {10: 4_000_000}, message_id="r"), origin="dso-1").accepted
    assert flows == [1, 1]  # the base alone was solved: a limit binds
    first = check.check(order(5, {10: 1_000_000}, message_id="a"), origin="dso-1")
    assert first.reservation is not None
    check.release(first.reservation)
    flows.clear()
    assert not check.check(order(5, {10: 4_000_000}, message_id="r2"), origin="dso-1").accepted
    assert flows == [1]  # with the order only: the base alone is known
    # a new forecast changes the base: solved again
    check.set_forecast(cp(4), PERIOD, {10: 100_000}, time=NOW - timedelta(hours=1))
    flows.clear()
    assert not check.check(order(5, {10: 4_000_000}, message_id="r3"), origin="dso-1").accepted
    assert flows == [1, 1]


async def test_the_ledger_is_rebuilt_from_the_database(
    cigre: GridModel, engine: AsyncEngine
) -> None:
    row = {
        "congestion_point": cp(5),
        "period": PERIOD,
        "isp": 10,
        "order_message_id": "old",
        "recipient_domain": "agr.example.com",
    }
    async with engine.begin() as conn:
        await conn.execute(
            insert(LedgerEntry),
            [
                row | {"power": 2_000_000, "origin": "dso-1"},
                row | {"power": 900_000, "origin": "iso-1", "order_message_id": "gone"},
                row | {"power": -900_000, "origin": "iso-1", "order_message_id": "gone"},
            ],
        )
    check = make_check(cigre)
    await check.load(engine)
    assert check.accepted_power(cp(5), PERIOD, 10) == 2_000_000
    assert not check.check(order(5, {10: 1_000_000}, message_id="new"), origin="dso-1").accepted
    assert check.cancel("old", origin="dso-1", recipient="agr.example.com") == [
        (cp(5), PERIOD, 10, 2_000_000)
    ]
    assert check.check(order(5, {10: 1_000_000}, message_id="new2"), origin="dso-1").accepted


def test_one_message_id_to_two_aggregators_is_two_orders(cigre: GridModel) -> None:
    """UFTP keys a message by (MessageID, sender, recipient): a DSO's MessageID reused toward
    a second aggregator is a second order, which holds its own power; cancelling one gives
    back only its own, and a repeat to the same aggregator stays idempotent."""
    check = make_check(cigre)
    to_a = order(13, {10: 2_000_000}, message_id="x", to="agr-a.example.com")
    to_b = order(13, {10: 2_000_000}, message_id="x", to="agr-b.example.com")
    first = check.check(to_a, origin="dso-1")
    second = check.check(to_b, origin="dso-1")
    assert first.outcome is Outcome.ACCEPTED and second.outcome is Outcome.ACCEPTED
    assert second.reservations == ((cp(13), PERIOD, 10, 2_000_000),)
    assert second.reservation is not None and second.reservation != first.reservation
    assert check.accepted_power(cp(13), PERIOD, 10) == 4_000_000
    again = check.check(to_a, origin="dso-1")
    assert again.reservations == () and again.reservation is None
    assert "already accepted" in again.reason
    assert check.accepted_power(cp(13), PERIOD, 10) == 4_000_000
    # aggregator B refuses: only its order's power goes back
    given_back = check.cancel("x", origin="dso-1", recipient="agr-b.example.com")
    assert given_back == [(cp(13), PERIOD, 10, 2_000_000)]
    assert check.accepted_power(cp(13), PERIOD, 10) == 2_000_000
    assert check.cancel("x", origin="dso-1", recipient="agr-b.example.com") == []
    assert check.accepted_power(cp(13), PERIOD, 10) == 2_000_000
    # A's order still holds its power, and a repeat of it is still nothing new
    assert check.check(to_a, origin="dso-1").reservation is None
    assert check.cancel("x", origin="dso-1", recipient="agr-a.example.com") == given_back
    assert check.accepted_power(cp(13), PERIOD, 10) == 0


def test_the_capacity_check_keys_an_order_by_its_recipient_too() -> None:
    check = CapacityLimitCheck({cp(13): 5_000_000})
    to_a = order(13, {10: 2_000_000}, message_id="x", to="agr-a.example.com")
    to_b = order(13, {10: 2_000_000}, message_id="x", to="agr-b.example.com")
    assert check.check(to_a, origin="dso-1").accepted
    assert check.check(to_b, origin="dso-1").accepted
    assert check.accepted_power(cp(13), PERIOD, 10) == 4_000_000
    given_back = check.cancel("x", origin="dso-1", recipient="agr-b.example.com")
    assert given_back == [(cp(13), PERIOD, 10, 2_000_000)]
    assert check.accepted_power(cp(13), PERIOD, 10) == 2_000_000
    assert check.cancel("x", origin="dso-1", recipient="agr-b.example.com") == []
    assert check.cancel("x", origin="dso-1", recipient="agr-a.example.com") == given_back
    assert check.accepted_power(cp(13), PERIOD, 10) == 0


async def test_the_ledger_rebuilds_the_orders_of_one_message_id_per_recipient(
    cigre: GridModel, engine: AsyncEngine
) -> None:
    """Rows name their recipient; rows of before that column take it from the messages
    table when it names a single recipient, else they stay booked, given back by no
    aggregator's refusal (over-count, never under-count)."""
    row = {"congestion_point": cp(13), "period": PERIOD, "isp": 10, "origin": "dso-1"}

    def record(message_id: str, to: str) -> dict[str, object]:
        return {
            "protocol": "uftp",
            "kind": "FlexOrder",
            "message_id": message_id,
            "conversation_id": "c1",
            "sender_domain": "dso.example.com",
            "recipient_domain": to,
            "digest": "",
            "received_at": NOW,
            "decision": "accepted",
            "audit_seq": 1,
        }

    async with engine.begin() as conn:
        await conn.execute(
            insert(LedgerEntry),
            [
                # x to A and to B; B refused, its power given back
                row
                | {"power": 1_000_000, "order_message_id": "x"}
                | {"recipient_domain": "agr-a.example.com"},
                row
                | {"power": 500_000, "order_message_id": "x"}
                | {"recipient_domain": "agr-b.example.com"},
                row
                | {"power": -500_000, "order_message_id": "x"}
                | {"recipient_domain": "agr-b.example.com"},
                # of before the column: the messages table names one recipient, or two
                row | {"power": 300_000, "order_message_id": "one", "recipient_domain": None},
                row | {"power": 200_000, "order_message_id": "two", "recipient_domain": None},
            ],
        )
        await conn.execute(
            insert(MessageRecord),
            [
                record("one", "agr-a.example.com"),
                record("two", "agr-a.example.com"),
                record("two", "agr-b.example.com"),
            ],
        )
    check = make_check(cigre)
    await check.load(engine)
    assert check.accepted_power(cp(13), PERIOD, 10) == 1_500_000
    assert check.cancel("x", origin="dso-1", recipient="agr-b.example.com") == []
    assert check.cancel("x", origin="dso-1", recipient="agr-a.example.com") == [
        (cp(13), PERIOD, 10, 1_000_000)
    ]
    # the legacy row's single recipient is known: its refusal gives it back
    assert check.cancel("one", origin="dso-1", recipient="agr-b.example.com") == []
    assert check.cancel("one", origin="dso-1", recipient="agr-a.example.com") == [
        (cp(13), PERIOD, 10, 300_000)
    ]
    # two recipients for one legacy order: which one's power it is is not known
    assert check.cancel("two", origin="dso-1", recipient="agr-a.example.com") == []
    assert check.cancel("two", origin="dso-1", recipient="agr-b.example.com") == []
    assert check.accepted_power(cp(13), PERIOD, 10) == 200_000
    capacity = CapacityLimitCheck({cp(13): 5_000_000})
    await capacity.load(engine)
    assert capacity.accepted_power(cp(13), PERIOD, 10) == 1_500_000
    assert capacity.cancel("x", origin="dso-1", recipient="agr-a.example.com") == [
        (cp(13), PERIOD, 10, 1_000_000)
    ]
    assert capacity.cancel("one", origin="dso-1", recipient="agr-a.example.com") == [
        (cp(13), PERIOD, 10, 300_000)
    ]
    assert capacity.accepted_power(cp(13), PERIOD, 10) == 200_000


# -- TSO-DSO coordination ----------------------------------------------------------------


def test_opposite_activations_of_iso_and_dso_are_flagged_not_rejected(cigre: GridModel) -> None:
    check = make_check(cigre)
    assert check.check(order(13, {10: 1_000_000}, message_id="d1"), origin="dso-1").accepted
    iso = check.check(order(14, {10: -500_000, 11: -500_000}, message_id="i1"), origin="iso-1")
    assert iso.outcome is Outcome.ACCEPTED
    assert iso.conflicts == (Conflict("d1", "dso-1", "DSO", 10, 1_000_000),)
    assert "conflict: opposite-direction activation of the other side" in iso.reason
    assert iso.audit_detail()["conflicts"][0]["order_message_id"] == "d1"
    # the same direction, or the same side, is no conflict
    assert check.check(order(13, {10: 200_000}, message_id="i2"), origin="iso-1").conflicts == ()
    assert check.check(order(13, {11: 200_000}, message_id="d2"), origin="dso-1").conflicts == (
        Conflict("i1", "iso-1", "ISO", 11, -500_000),
    )
    assert check.check(order(13, {10: -100_000}, message_id="d3"), origin="dso-1").conflicts == (
        Conflict("i2", "iso-1", "ISO", 10, 200_000),
    )


def test_an_iso_activation_is_checked_against_the_dsos_accepted_orders(cigre: GridModel) -> None:
    check = make_check(cigre)
    assert check.check(order(5, {10: 2_000_000}, message_id="d"), origin="dso-1").accepted
    iso = check.check(order(4, {10: 1_000_000}, message_id="i"), origin="iso-1")
    assert iso.outcome is Outcome.REJECTED and iso.binding is not None
    assert iso.binding.element == "Line 2-3"


def test_a_temporary_interface_limit_applies_in_its_window_until_cleared(cigre: GridModel) -> None:
    check = make_check(cigre)
    start = isp_start(PERIOD, TZ, ISP, 10)
    limit_id = check.set_temporary_limit(
        "mv", 28_000_000, start=start, end=start + ISP, reason="TSO request 42"
    )
    inside = check.check(order(13, {10: 5_000_000}, message_id="a"), origin="dso-1")
    assert inside.outcome is Outcome.REJECTED
    assert inside.binding is not None and inside.binding.element_type == "interface"
    assert "temporary limit 28 MW (TSO request 42)" in inside.reason
    assert check.check(order(13, {11: 5_000_000}, message_id="b"), origin="dso-1").accepted
    check.clear_temporary_limit(limit_id)
    assert check.check(order(13, {10: 5_000_000}, message_id="c"), origin="dso-1").accepted


# -- traffic light and re-validation -----------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "bus", "colour"),
    [
        (0.6, 5, TrafficLight.GREEN),
        (1.0, 5, TrafficLight.YELLOW),  # Trafo 0-1 just under its 98 % limit
        (1.0, 13, TrafficLight.GREEN),  # the other feeder has room
        (1.012, 5, TrafficLight.ORANGE),  # into the safety margin
        (1.05, 5, TrafficLight.RED),  # past the rating
    ],
)
def test_the_traffic_light_follows_the_headroom(
    cigre: GridModel, profile: float, bus: int, colour: TrafficLight
) -> None:
    check = make_check(cigre, load_profile=(profile,))
    regime = check.traffic_light(cp(bus), PERIOD, 10)
    assert regime.colour is colour, regime.reason


def test_accepted_orders_turn_the_light_and_a_stale_state_is_red(cigre: GridModel) -> None:
    check = make_check(cigre)
    assert check.traffic_light(cp(5), PERIOD, 10).colour is TrafficLight.GREEN
    assert check.check(order(5, {10: 2_500_000}), origin="dso-1").accepted
    regime = check.traffic_light(cp(5), PERIOD, 10)
    assert regime.colour is TrafficLight.YELLOW
    assert regime.binding is not None and regime.binding.element == "Line 2-3"
    assert check.traffic_light(cp(5), PERIOD, 11).colour is TrafficLight.GREEN
    later = make_check(cigre, clock=lambda: MODEL_TIME + timedelta(days=31))
    assert later.traffic_light(cp(5), PERIOD, 10).colour is TrafficLight.RED
    assert check.traffic_light("ean.000000000000", PERIOD, 10).colour is TrafficLight.RED


def test_a_new_forecast_revalidates_accepted_orders_and_names_the_binding(
    cigre: GridModel,
) -> None:
    check = make_check(cigre)
    feeder_1 = check.check(order(5, {10: 2_000_000}, message_id="f1"), origin="dso-1")
    feeder_2 = check.check(order(13, {10: 1_000_000}, message_id="f2"), origin="iso-1")
    assert feeder_1.accepted and feeder_2.accepted
    assert check.revalidate("mv") == []
    made = NOW - timedelta(hours=1)
    check.set_forecast(cp(4), PERIOD, {10: 2_000_000}, time=made)
    unsafe = check.revalidate("mv", PERIOD)
    assert [(u.order_message_id, u.origin, u.isp) for u in unsafe] == [("f1", "dso-1", 10)]
    b = unsafe[0].binding
    assert b is not None and b.element == "Line 2-3" and b.margin < 0
    assert "Line 2-3" in unsafe[0].reason
    # the next check decides on the forecast, and says so
    decision = check.check(order(13, {10: 1000}, message_id="n"), origin="dso-1")
    assert decision.base_state_time == made


# -- configuration and wiring ------------------------------------------------------------


def config_text(gridcheck: str, *, cp_extra: str = 'zone = "mv"\n  grid_node = "Bus 5"') -> str:
    k1 = public_b64(Ed25519PrivateKey.generate())
    k2 = public_b64(Ed25519PrivateKey.generate())
    return f"""
[gateway]
uftp_domain = "gridgate.example.com"
signing_key_file = "gw.key"
database_url = "sqlite+aiosqlite:///gg.db"

{gridcheck}

[[participants]]
id = "dso-1"
role = "DSO"
uftp_domain = "dso.example.com"
public_keys = ["{k1}"]
  [[participants.congestion_points]]
  ean = "{cp(5)}"
  limit_w = 100000
  {cp_extra}
[[participants]]
id = "agr-1"
role = "AGR"
uftp_domain = "agr.example.com"
public_keys = ["{k2}"]
  [[participants.resources]]
  id = "bat-1"
  connection_ean = "ean.871685900000000101"
  congestion_point = "{cp(5)}"
  min_w = -50000
  max_w = 50000
  grid_node = "Bus 4"
  [[participants.resources]]
  id = "bat-2"
  connection_ean = "ean.871685900000000102"
  congestion_point = "{cp(5)}"
  min_w = 0
  max_w = 300000
"""


POWERFLOW = """
[gridcheck]
method = "powerflow"
  [[gridcheck.zones]]
  id = "mv"
  dso = "dso-1"
  model = "grids/cigre.json"
  format = "pandapower"
  thermal_margin = 0.03
  interface_limit_w = 40000000
  default_limit_w = 500000
  load_profile = [0.6]
    [[gridcheck.zones.temporary_limits]]
    interface_limit_w = 27000000
    start = 2026-11-27T16:00:00+01:00
    end = 2026-11-27T20:00:00+01:00
"""


def write_config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "gw.key").write_text(secret_b64(Ed25519PrivateKey.generate()))
    path = tmp_path / "gridgate.toml"
    path.write_text(body)
    return path


def test_a_powerflow_config_loads_places_resources_and_builds_the_check(tmp_path: Path) -> None:
    import pandapower as pp
    import pandapower.networks as pn

    (tmp_path / "grids").mkdir()
    pp.to_json(pn.create_cigre_network_mv(with_der="all"), str(tmp_path / "grids" / "cigre.json"))
    settings = load_settings(write_config(tmp_path, config_text(POWERFLOW)))
    zone = settings.gridcheck.zones[0]
    assert zone.model == [tmp_path / "grids" / "cigre.json"]  # relative to the config file
    assert zone.voltage_margin == 0.002 and zone.v_min == 0.95 and zone.thermal_margin == 0.03
    directory = Directory.from_settings(settings)
    # split_power shares by power range: 100 kW at Bus 4, 300 kW at the cp's Bus 5
    sites = congestion_points_from(directory)
    assert sites[cp(5)].placement("agr.example.com") == (("Bus 4", 0.25), ("Bus 5", 0.75))
    assert sites[cp(5)].placement("other.example.com") == (("Bus 5", 1.0),)
    check = PowerFlowCheck.from_settings(settings, directory)
    model = check.model_of("mv")
    assert model is not None and len(model.nodes) == 15
    decision = check.check(order(5, {10: 100_000}), origin="dso-1")
    assert decision.outcome is Outcome.ACCEPTED and decision.method == METHOD_AC
    # the configured temporary limit: 16:00-20:00 local is ISPs 65-80
    tight = check.check(order(5, {70: 1_000_000}, message_id="t"), origin="dso-1")
    assert tight.binding is not None and tight.binding.element_type == "interface"
    assert "temporary limit 27 MW" in tight.reason
    assert check.check(order(5, {10: 1_000_000}, message_id="u"), origin="dso-1").accepted

    from gateway.app import Gateway

    gateway = Gateway(settings, serve_http=False)
    assert isinstance(gateway.grid_check, PowerFlowCheck)


def test_the_capacity_method_stays_the_default(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, config_text("", cp_extra="")))
    assert settings.gridcheck.method == "capacity"
    from gateway.app import Gateway

    assert isinstance(Gateway(settings, serve_http=False).grid_check, CapacityLimitCheck)


@pytest.mark.parametrize(
    ("gridcheck", "cp_extra", "expected"),
    [
        (
            POWERFLOW,
            'zone = "lv"',
            "congestion_points[0].zone: unknown zone 'lv' (gridcheck.zones: mv)",
        ),
        (
            POWERFLOW.replace('dso = "dso-1"', 'dso = "agr-1"'),
            'zone = "mv"',
            "gridcheck.zones[0].dso: 'agr-1' is a AGR, not a DSO",
        ),
        (
            POWERFLOW.replace('dso = "dso-1"', 'dso = "nobody"'),
            'zone = "mv"',
            "gridcheck.zones[0].dso: 'nobody' is no participant",
        ),
        (
            POWERFLOW,
            'zone = "mv"',
            "congestion_points[0].grid_node: congestion point "
            f"{cp(5)} in zone 'mv' has no grid node: set grid_node here or on each of its "
            "resources (resources without one: bat-2)",
        ),
        (
            POWERFLOW.replace('format = "pandapower"', 'format = "psse"'),
            'zone = "mv"\n  grid_node = "Bus 5"',
            "gridcheck.zones[0].format: Input should be 'cgmes' or 'pandapower'",
        ),
        (
            '[gridcheck]\nmethod = "powerflow"',
            "",
            'method = "powerflow" needs at least one [[gridcheck.zones]]',
        ),
        (
            POWERFLOW.replace("load_profile = [0.6]", "v_min = 1.04\n  v_max = 1.04"),
            'zone = "mv"\n  grid_node = "Bus 5"',
            "leaves nothing inside the voltage_margin",
        ),
    ],
)
def test_gridcheck_config_errors_name_the_key(
    tmp_path: Path, gridcheck: str, cp_extra: str, expected: str
) -> None:
    path = write_config(tmp_path, config_text(gridcheck, cp_extra=cp_extra))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_a_grid_node_missing_from_the_model_stops_the_start(tmp_path: Path) -> None:
    import pandapower as pp
    import pandapower.networks as pn

    (tmp_path / "grids").mkdir()
    pp.to_json(pn.create_cigre_network_mv(with_der="all"), str(tmp_path / "grids" / "cigre.json"))
    text = config_text(POWERFLOW, cp_extra='zone = "mv"\n  grid_node = "Bus 99"')
    settings = load_settings(write_config(tmp_path, text))
    with pytest.raises(ConfigError) as caught:
        PowerFlowCheck.from_settings(settings, Directory.from_settings(settings))
    message = str(caught.value)
    assert "gridcheck.zones[0].model" in message and "'Bus 99'" in message and cp(5) in message


def test_the_portfolios_add_the_sum_of_every_aggregators_latest_d_prognosis(
    cigre: GridModel,
) -> None:
    check = make_check(cigre)
    changed: list[tuple[str, date | None]] = []
    check.listeners.append(lambda zone, period: changed.append((zone, period)))

    def prognosis(sender: str, power: int, made: datetime) -> DPrognosis:
        return DPrognosis(
            envelope=Envelope(str(uuid.uuid4()), "c", sender, "dso.example.com", Role.AGR, made),
            isp_duration=ISP,
            time_zone=TZ,
            period=PERIOD,
            congestion_point=cp(4),
            revision=1,
            isps=(PowerIsp(10, power),),
        )

    check.forecast(prognosis("a.example.com", 1_500_000, NOW - timedelta(hours=2)))
    check.forecast(prognosis("b.example.com", 1_000_000, NOW - timedelta(hours=1)))
    # a second prognosis of aggregator a replaces its first: 1.0 + 1.0 MW, not 2.5 MW
    check.forecast(prognosis("a.example.com", 1_000_000, NOW - timedelta(minutes=30)))
    assert changed == [("mv", PERIOD)] * 3
    # what is left for an order at bus 4 is what portfolios of 2 MW leave, not 2.5 MW's
    big = order(4, {10: 5_000_000})
    decision = check.check(big, origin="dso-1", allow_curtail=True)
    assert decision.base_state_time == NOW - timedelta(minutes=30)  # the newest made it
    expected: dict[int | None, float | None] = {}
    for total in (None, 0, 2_000_000, 2_500_000):
        other_check = make_check(cigre)
        if total is not None:
            other_check.forecast(prognosis("one.example.com", total, NOW))
        expected[total] = other_check.check(big, origin="dso-1", allow_curtail=True).fraction
    assert decision.fraction is not None and expected[2_000_000] is not None
    assert expected[2_500_000] is not None and expected[2_500_000] < expected[2_000_000]
    assert decision.fraction == pytest.approx(expected[2_000_000], abs=0.006)
    # a portfolio adds to the rest of the node's load, which a prognosis of 0 W leaves alone
    assert expected[0] == pytest.approx(expected[None], abs=0.006)
    # a congestion point in no zone has no grid state: its prognosis changes nothing
    other = dataclasses.replace(prognosis("a.example.com", 5, NOW), congestion_point="ean.1")
    check.forecast(other)
    assert len(changed) == 3
