"""The TSO-DSO grid-security check on an exact AC power flow.

Per zone (one DSO grid) the check holds a grid model (`gateway.gridcheck.grid`), a base state
per ISP and a ledger of accepted activations per ISP. A candidate order is placed on the
model's nodes the way the pipeline shares it among resources (`split_power`: by power range,
at each resource's grid node) and decided on base + every accepted activation + the candidate,
in every ISP it covers, by a Newton-Raphson power flow (notes/gridcheck.md §3):

- accepted when no line, transformer, node voltage or the TSO-DSO interface goes past its
  limit less the zone's safety margin; a limit the base state and the ledger break already
  blocks the candidate only if it makes that same metric worse;
- otherwise, when the order may be curtailed, the largest safe fraction α of it: sized on a
  model in which the branch P and Q are linear in α (|S| rebuilt, never |I| linearised),
  confirmed and tightened in AC until AC brackets it within 0.5 % of the order's power; when
  it may not, rejected, naming a linear estimate of α (`_FractionSearch`);
- fail safe: a stale model or forecast, or a base state whose power flow does not converge,
  falls back to the zone's pre-agreed `default_limit_w` per congestion point (the capacity
  check), or rejects; an unknown zone rejects. Nothing is ever accepted unchecked.

The check keeps the last AC state of each (zone, period, ISP), and the base alone apart: an
accepted candidate's flow is the next check's starting state, so a single-ISP check costs one
power flow once its ISP's state is known.
"""

from __future__ import annotations

import enum
import functools
import itertools
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.gridcheck.base import Binding, Conflict, Decision, Outcome
from gateway.gridcheck.grid import AcSolver, GridModel, Solution, load_model
from gateway.gridcheck.ledger import OrderKey, ledger_orders
from gateway.model import DPrognosis, FlexOrder, Market, Role, isp_start

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.routing import Directory

Array = npt.NDArray[np.float64]
Placement = tuple[tuple[str, float], ...]  # (grid node name, share); the shares sum to 1

METHOD_AC = "powerflow-ac/v1"
# the zone's pre-agreed limit per congestion point while the grid cannot be checked
METHOD_DEFAULT_LIMIT = "powerflow-default-limit/v1"
# rejected because the grid cannot be checked and no default limit is agreed
METHOD_FAIL_SAFE = "powerflow-fail-safe/v1"

# a limit broken before the candidate is "made worse" only beyond solver noise (PGM NR is
# within ~1e-12 pu, grid.NR_TOLERANCE_PU); in units of the metric's scale
WORSE_EPS = 1e-6
# the AC bracket on the curtailed fraction: safe at α, unsafe at α + ALPHA_TOL
ALPHA_TOL = 0.005
# the curtailed fraction is AC-confirmed this far below the model's crossing (see
# _FractionSearch): the model, fitted to three AC flows, is closer than that to AC
ALPHA_BACKOFF = 0.001
MAX_AC_ROUNDS = 24
# conflicts named in a reason text
CONFLICTS_NAMED = 5


class TrafficLight(enum.StrEnum):
    """USEF regimes of a congestion point (USEF 2021 §3.3: green, yellow, orange, red)."""

    GREEN = "green"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"


@dataclass(frozen=True, slots=True)
class GridRegime:
    """A congestion point's traffic light in one ISP, and the headroom it comes from."""

    colour: TrafficLight
    # least margin left to a limit the congestion point's power moves, as a fraction of the
    # limit (voltages: of the band); None when the state could not be checked
    headroom: float | None
    binding: Binding | None
    reason: str


@dataclass(frozen=True, slots=True)
class UnsafeOrder:
    """An accepted order a re-validation found unsafe, with what it now breaks."""

    origin: str
    order_message_id: str
    congestion_point: str
    period: date
    isp: int
    binding: Binding | None
    reason: str


@dataclass(frozen=True, slots=True)
class ZoneLimits:
    """One zone's limits and fail-safe settings (`[[gridcheck.zones]]`)."""

    id: str
    dso: str
    thermal_margin: float = 0.02
    voltage_margin: float = 0.002
    v_min: float = 0.95
    v_max: float = 1.05
    interface_limit_w: float | None = None
    max_model_age: timedelta = timedelta(hours=720)
    max_forecast_age: timedelta = timedelta(hours=36)
    default_limit_w: int | None = None
    load_profile: tuple[float, ...] = ()
    yellow_below: float = 0.10
    orange_below: float = 0.0


@dataclass(frozen=True, slots=True)
class CongestionPointGrid:
    """Where a congestion point's flexibility sits in its zone's grid model."""

    zone: str
    # the congestion point as a whole: forecasts, the ledger rebuilt after a restart
    nodes: Placement
    # per aggregator (UFTP domain): its resources there, shared as `split_power` shares
    by_aggregator: Mapping[str, Placement] = field(default_factory=dict)
    # the probe that finds the elements its power moves (traffic light), W
    probe_w: float = 100_000.0

    def placement(self, aggregator_domain: str | None) -> Placement:
        found = self.by_aggregator.get(aggregator_domain or "")
        return found if found else self.nodes


@dataclass(frozen=True, slots=True)
class TemporaryLimit:
    """A temporary TSO-DSO interface limit for a zone (SO GL Art. 182(4)), W."""

    zone: str
    interface_limit_w: float
    start: datetime
    end: datetime
    reason: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def row(
        self,
        *,
        source: str,
        set_by: str,
        set_at: datetime,
        document: str | None = None,
        revision: int | None = None,
    ) -> dict[str, Any]:
        """The `temporary_limits` row that puts this limit on record: `source` is "api" or
        "cim", `set_by` the participant, `document` and `revision` a capacity document's
        mRID and revisionNumber."""
        return {
            "id": self.id,
            "zone": self.zone,
            "interface_limit_w": self.interface_limit_w,
            "starts_at": self.start,
            "ends_at": self.end,
            "reason": self.reason,
            "source": source,
            "set_by": set_by,
            "document_mrid": document,
            "document_revision": revision,
            "set_at": set_at,
            "cleared_at": None,
        }


@dataclass(frozen=True, slots=True)
class _Forecast:
    powers: Mapping[int, int]
    time: datetime


@dataclass(slots=True)
class _Held:
    """What one accepted order holds."""

    origin: str
    message_id: str
    # the UFTP domain the order went to (None: a ledger row of before the column, whose
    # recipient the messages table does not tell)
    recipient: str | None
    congestion_point: str
    zone: str
    period: date
    placement: Placement
    rows: list[tuple[str, date, int, int]]
    # (requested power per ISP, recipient domain): a repeat of the same order is idempotent
    fingerprint: tuple[tuple[tuple[int, int], ...], str] | None
    fraction: float = 1.0


@dataclass(slots=True)
class _State:
    """Base + ledger of one (zone, period, ISP), solved in AC, with its limits."""

    p: Array
    q: Array
    time: datetime  # the base state's time (forecast, else the model's)
    forecast_cp: str | None  # the congestion point of the oldest forecast in it
    converged: bool
    m: Array  # metric row (see _Grid)
    interface_p_w: float
    lim: Array  # the enforced limits (rating less margin)
    cap: Array  # what the candidate may reach: lim, or the value now if already past lim
    scale: Array  # the unit each metric's excess is measured in
    temporary: str | None  # the temporary limit in force, described


class _Grid:
    """One zone's model, solver and limit rows; replaced whole by `set_model`.

    A metric row has M = B + 2N + 1 entries, each "larger is worse": branch loading (B),
    node voltage (N, against v_max), minus node voltage (N, against -v_min), and
    |interface P| (W). `lim`, `rated`, `scale` and `safety` line up with it.
    """

    def __init__(self, model: GridModel, limits: ZoneLimits) -> None:
        self.model = model
        self.solver = AcSolver(model)
        self.index = {n.name: n.index for n in model.nodes}
        n, b = len(model.nodes), len(model.branches)
        self.n, self.b = n, b
        self.size = b + 2 * n + 1
        theta, delta = limits.thermal_margin, limits.voltage_margin
        self.theta = theta
        band = limits.v_max - limits.v_min
        self.lim = np.concatenate(
            [
                np.full(b, 1.0 - theta),
                np.full(n, limits.v_max - delta),
                np.full(n, -(limits.v_min + delta)),
                [math.inf],
            ]
        )
        self.rated = np.concatenate(
            [np.ones(b), np.full(n, limits.v_max), np.full(n, -limits.v_min), [math.inf]]
        )
        self.scale = np.concatenate(
            [np.full(b, 1.0 - theta), np.full(n, band), np.full(n, band), [1.0]]
        )
        self.safety = np.concatenate([np.full(b, theta), np.full(2 * n, delta), [0.0]])
        # the metrics that are magnitudes of a power (|S| loading, |interface P|): their
        # square is what is quadratic in an order's power (see _FractionSearch)
        self.squared = np.zeros(self.size, dtype=bool)
        self.squared[:b] = True
        self.squared[-1] = True
        self.vectors: dict[Placement, Array] = {}
        # the last AC state of base + ledger per (period, isp), valid for this model only
        self.states: dict[tuple[date, int], _State] = {}
        # the solved state of the base alone (no accepted order) per (period, isp): an ISP
        # whose orders are all released is back at it. Kept across ledger changes, dropped
        # with the states when the base changes (model, forecast, temporary limit)
        self.bases: dict[tuple[date, int], _State] = {}

    def scale_for(self, lim: Array) -> Array:
        """The scale row for these limits: the interface's is its limit (W), when it has one."""
        if not math.isfinite(lim[-1]):
            return self.scale
        scale = self.scale.copy()
        scale[-1] = lim[-1]
        return scale

    def vector(self, placement: Placement) -> Array:
        """The node shares of a placement as an (N,) vector (sums to 1)."""
        vec = self.vectors.get(placement)
        if vec is None:
            vec = np.zeros(self.n)
            for name, share in placement:
                vec[self.index[name]] += share
            self.vectors[placement] = vec
        return vec

    def metrics(self, sol: Solution) -> Array:
        s = sol.u_pu.shape[0]
        m = np.empty((s, self.size))
        m[:, : self.b] = sol.loading
        m[:, self.b : self.b + self.n] = sol.u_pu
        m[:, self.b + self.n : -1] = -sol.u_pu
        m[:, -1] = np.abs(sol.interface_p_w)
        return m

    def element(self, j: int) -> tuple[str, str, str]:
        """(element id, element type, metric) of metric row entry j."""
        if j < self.b:
            branch = self.model.branches[j]
            return branch.name, branch.kind, "loading"
        if j < self.b + self.n:
            return self.model.nodes[j - self.b].name, "node", "v_max"
        if j < self.b + 2 * self.n:
            return self.model.nodes[j - self.b - self.n].name, "node", "v_min"
        return self.model.nodes[self.model.slack].name, "interface", "interface_mw"


class PowerFlowCheck:
    """The grid check per zone on an exact AC power flow; see the module docstring."""

    def __init__(
        self,
        zones: Mapping[str, ZoneLimits],
        congestion_points: Mapping[str, CongestionPointGrid],
        *,
        roles: Mapping[str, Role] | None = None,
        market: Market | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        models: Iterable[GridModel] = (),
    ) -> None:
        self._limits = dict(zones)
        self._cps = dict(congestion_points)
        self._roles = dict(roles or {})
        self._market = market or Market()
        self._clock = clock
        self._zone_cps: dict[str, list[str]] = {z: [] for z in self._limits}
        for cp, site in self._cps.items():
            if site.zone in self._zone_cps:
                self._zone_cps[site.zone].append(cp)
        self._grids: dict[str, _Grid] = {}
        self._forecasts: dict[tuple[str, date], _Forecast] = {}
        self._temporary: dict[str, TemporaryLimit] = {}
        # the ledger: what each order holds, per (zone, period, isp) by token, per (cp, period)
        self._held: dict[str, _Held] = {}
        self._isp_tokens: dict[tuple[str, date, int], dict[str, int]] = {}
        self._cp_power: dict[tuple[str, date], dict[int, int]] = {}
        # ISO and DSO activations per (zone, period, isp, role, consumption?): the conflicts
        self._sides: dict[tuple[str, date, int, Role, bool], dict[str, int]] = {}
        # (origin, order MessageID, recipient domain) -> the token of what the order holds
        self._tokens: dict[OrderKey, str] = {}
        # the latest D-Prognosis per (congestion point, period) and aggregator, and their sum
        self._prognoses: dict[tuple[str, date], dict[str, DPrognosis]] = {}
        self._portfolios: dict[tuple[str, date], _Forecast] = {}
        # told (zone, period or None for all) when a zone's base state changed: re-validation
        self.listeners: list[Callable[[str, date | None], None]] = []
        # reservation tokens: unique in this process (a ledger row's is "ledger:…", see load)
        self._token_prefix = uuid.uuid4().hex[:12]
        self._token_serial = itertools.count(1)

        for model in models:
            self.set_model(model)

    def _new_token(self) -> str:
        return f"{self._token_prefix}-{next(self._token_serial)}"

    # -- set-up -------------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        directory: Directory,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> PowerFlowCheck:
        """Build the check from the operator config and load every zone's model."""
        from gateway.errors import ConfigError

        zones = {
            z.id: ZoneLimits(
                id=z.id,
                dso=z.dso,
                thermal_margin=z.thermal_margin,
                voltage_margin=z.voltage_margin,
                v_min=z.v_min,
                v_max=z.v_max,
                interface_limit_w=z.interface_limit_w,
                max_model_age=timedelta(hours=z.max_model_age_hours),
                max_forecast_age=timedelta(hours=z.max_forecast_age_hours),
                default_limit_w=z.default_limit_w,
                load_profile=tuple(z.load_profile),
                yellow_below=z.traffic_light.yellow_below,
                orange_below=z.traffic_light.orange_below,
            )
            for z in settings.gridcheck.zones
        }
        check = cls(
            zones,
            congestion_points_from(directory),
            roles={p.id: p.role for p in directory.participants.values()},
            market=Market(settings.market.isp, settings.market.time_zone),
            clock=clock,
        )
        for index, z in enumerate(settings.gridcheck.zones):
            where = f"gridcheck.zones[{index}].model"
            source = z.model[0] if len(z.model) == 1 else z.model
            try:
                model = load_model(source, zone=z.id, format=z.format)
                check.set_model(model)
            except (OSError, ValueError, KeyError) as e:
                raise ConfigError(f"{where}: zone {z.id!r}: {e}") from e
            for t in z.temporary_limits:
                check.set_temporary_limit(
                    z.id, t.interface_limit_w, start=t.start, end=t.end, reason=t.reason
                )
        return check

    def set_model(self, model: GridModel) -> None:
        """Swap in a zone's grid model (atomically; the old one stays if this one is unfit)."""
        limits = self._limits.get(model.zone)
        if limits is None:
            raise ValueError(f"grid model {model.version}: zone {model.zone!r} is not configured")
        grid = _Grid(model, limits)
        for cp in self._zone_cps[model.zone]:
            site = self._cps[cp]
            for placement in (site.nodes, *site.by_aggregator.values()):
                missing = [name for name, _ in placement if name not in grid.index]
                if missing:
                    raise ValueError(
                        f"grid model {model.version} of zone {model.zone!r} has no node "
                        f"{', '.join(map(repr, missing))} (congestion point {cp})"
                    )
        self._grids[model.zone] = grid  # with an empty state cache: one swap
        self._changed(model.zone, None)

    def model_of(self, zone: str) -> GridModel | None:
        grid = self._grids.get(zone)
        return grid.model if grid else None

    def set_forecast(
        self, congestion_point: str, period: date, powers: Mapping[int, int], *, time: datetime
    ) -> None:
        """Take a congestion point's forecast net consumption per ISP (W) as its base state.

        The forecast is the whole congestion point's power (the sum of its D-Prognoses):
        in a forecast ISP it replaces the model's operating point at the congestion point's
        nodes, shared by their weights. `time` is when it was made (its age is checked).
        """
        site = self._cps.get(congestion_point)
        if site is None:
            raise ValueError(f"congestion point {congestion_point} lies in no grid zone")
        if time.tzinfo is None:
            raise ValueError("a forecast's time must be timezone-aware")
        self._forecasts[(congestion_point, period)] = _Forecast(dict(powers), time)
        self._forget(site.zone, period)

    def forecast(self, prognosis: DPrognosis) -> None:
        """An aggregator's D-Prognosis arrived: the aggregators' portfolios at the congestion
        point are forecast to consume the sum of the latest D-Prognosis of each of them,
        made when the newest was.

        A D-Prognosis covers an aggregator's portfolio, not the congestion point's other
        customers: it is added to the base state (the model's operating point, scaled by the
        profile, or the DSO's own forecast) at the congestion point's nodes. The model's
        loads there are taken to be everything outside the portfolios (docs/gridcheck.md).
        A congestion point in no zone has no grid state to refresh: it is ignored."""
        cp, period = prognosis.congestion_point, prognosis.period
        if cp not in self._cps:
            return
        latest = self._prognoses.setdefault((cp, period), {})
        latest[prognosis.envelope.sender_domain] = prognosis
        total: dict[int, int] = {}
        for each in latest.values():
            for isp in each.isps:
                for i in isp.indices:
                    total[i] = total.get(i, 0) + isp.power
        newest = max(p.envelope.timestamp for p in latest.values())
        self._portfolios[(cp, period)] = _Forecast(total, newest)
        self._forget(self._cps[cp].zone, period)
        self._changed(self._cps[cp].zone, period)

    def _changed(self, zone: str, period: date | None) -> None:
        """The base state of a zone changed (a model, a forecast, a temporary limit)."""
        for listener in self.listeners:
            listener(zone, period)

    def set_temporary_limit(
        self,
        zone: str,
        interface_limit_w: float,
        *,
        start: datetime,
        end: datetime,
        reason: str = "",
        limit_id: str | None = None,
    ) -> str:
        """Limit the zone's TSO-DSO interface in ISPs overlapping [start, end); return its id
        (`limit_id`, to put a limit on record back in force under its own, or a new one)."""
        if zone not in self._limits:
            raise ValueError(f"unknown zone {zone!r}")
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ValueError("a temporary limit needs an aware start before its end")
        watts = float(interface_limit_w)
        limit = (
            TemporaryLimit(zone, watts, start, end, reason)
            if limit_id is None
            else TemporaryLimit(zone, watts, start, end, reason, limit_id)
        )
        self._temporary[limit.id] = limit
        self._forget(zone)
        self._changed(zone, None)
        return limit.id

    def temporary_limit(self, limit_id: str) -> TemporaryLimit | None:
        """The temporary limit in force with this id, if any."""
        return self._temporary.get(limit_id)

    def clear_temporary_limit(self, limit_id: str) -> None:
        limit = self._temporary.pop(limit_id, None)
        if limit is not None:
            self._forget(limit.zone)

    def _forget(self, zone: str, period: date | None = None) -> None:
        grid = self._grids.get(zone)
        if grid is None:
            return
        for states in (grid.states, grid.bases):
            if period is None:
                states.clear()
            else:
                for key in [k for k in states if k[0] == period]:
                    del states[key]

    # -- the ledger ---------------------------------------------------------------------

    async def load(self, engine: AsyncEngine) -> None:
        """Rebuild the ledger from the table (at start-up).

        Each order is placed at its aggregator's resources: the recipient its ledger rows
        name, or for rows of before that column the single recipient the messages table
        names for it (see gateway.gridcheck.ledger); an order whose recipient is not known
        is placed over its congestion point's nodes.
        """
        for key, rows in (await ledger_orders(engine)).items():
            kept = [(cp, period, isp, p) for (cp, period, isp), p in rows.items() if p]
            if not kept:
                continue
            origin, mid, domain = key
            token = f"ledger:{origin}:{mid}:{domain or ''}"
            for cp, period, isp, power in kept:
                site = self._cps.get(cp)
                zone = site.zone if site else ""
                placement = site.placement(domain) if site else ()
                self._reserve(token, key, cp, zone, period, placement, isp, power)
            self._tokens[key] = token

    def _reserve(
        self,
        token: str,
        key: OrderKey,
        cp: str,
        zone: str,
        period: date,
        placement: Placement,
        isp: int,
        power: int,
    ) -> None:
        origin, message_id, recipient = key
        held = self._held.get(token)
        if held is None:
            held = _Held(origin, message_id, recipient, cp, zone, period, placement, [], None)
            self._held[token] = held
        held.rows.append((cp, period, isp, power))
        by_isp = self._cp_power.setdefault((cp, period), {})
        by_isp[isp] = by_isp.get(isp, 0) + power
        if zone:
            tokens = self._isp_tokens.setdefault((zone, period, isp), {})
            tokens[token] = tokens.get(token, 0) + power
            self._forget_one(zone, period, isp)
            role = self._roles.get(origin)
            if role in (Role.ISO, Role.DSO) and power:
                side = self._sides.setdefault((zone, period, isp, role, power > 0), {})
                side[token] = power

    def accepted_power(self, congestion_point: str, period: date, isp: int) -> int:
        return self._cp_power.get((congestion_point, period), {}).get(isp, 0)

    def release(self, token: str, *, notify: bool = True) -> None:
        """Give back what a reservation holds. The listeners hear of each (zone, period) it
        touched: the orders left may be unsafe without it (an opposite-direction activation
        that made room for them), which re-validation finds."""
        held = self._held.pop(token, None)
        if held is None:
            return
        for cp, period, isp, power in held.rows:
            by_isp = self._cp_power.get((cp, period), {})
            by_isp[isp] = by_isp.get(isp, 0) - power
            if held.zone:
                tokens = self._isp_tokens.get((held.zone, period, isp), {})
                tokens.pop(token, None)
                self._forget_one(held.zone, period, isp)
                role = self._roles.get(held.origin)
                if role in (Role.ISO, Role.DSO) and power:
                    self._sides.get((held.zone, period, isp, role, power > 0), {}).pop(token, None)
        key = (held.origin, held.message_id, held.recipient)
        if self._tokens.get(key) == token:
            del self._tokens[key]
        if notify and held.zone:
            self._changed(held.zone, held.period)

    def cancel(
        self, order_message_id: str, *, origin: str, recipient: str
    ) -> list[tuple[str, date, int, int]]:
        """Give back what the accepted order `order_message_id` of `origin` to `recipient`
        (a UFTP domain) holds; return it, for the ledger to record. The same MessageID to
        another recipient is another order: it keeps what it holds."""
        token = self._tokens.get((origin, order_message_id, recipient))
        held = self._held.get(token) if token else None
        if token is None or held is None:
            return []
        given_back = [r for r in held.rows if r[3]]
        self.release(token)
        return given_back

    def expire(self, before: date) -> int:
        """Drop what orders of periods before `before` hold; return how many orders."""
        old = [t for t, h in self._held.items() if h.period < before]
        for token in old:
            self.release(token, notify=False)  # past periods: nothing left to re-validate
        for key in [k for k in self._forecasts if k[1] < before]:
            del self._forecasts[key]
        for key in [k for k in self._prognoses if k[1] < before]:
            del self._prognoses[key]
            self._portfolios.pop(key, None)
        for grid in self._grids.values():  # the AC states of past periods
            for states in (grid.states, grid.bases):
                for past in [k for k in states if k[0] < before]:
                    del states[past]
        return len(old)

    # -- the check ----------------------------------------------------------------------

    def check(self, order: FlexOrder, *, origin: str, allow_curtail: bool = False) -> Decision:
        """Decide on base + every accepted activation + this order, in AC; reserve if safe.

        Without `allow_curtail` an order that only fits in part is rejected and the reason
        estimates how much would fit (a signed UFTP order cannot be changed); with it the
        decision is CURTAILED and reserves the largest safe fraction of the power.
        """
        cp = order.congestion_point
        site = self._cps.get(cp)
        limits = self._limits.get(site.zone) if site else None
        if site is None or limits is None:
            zone = f"zone {site.zone!r}, which is not configured" if site else "no grid zone"
            return Decision(
                Outcome.REJECTED,
                f"gridcheck: congestion point {cp} lies in {zone}; the check rejects what it "
                "cannot check",
                METHOD_FAIL_SAFE,
            )
        powers = {i: p for i, p in order.activated_power_by_isp().items() if p}
        # UFTP's key: the same MessageID to another recipient is another order
        key = (origin, order.envelope.message_id, order.envelope.recipient_domain)
        fingerprint = (tuple(sorted(powers.items())), order.envelope.recipient_domain)
        known = self._tokens.get(key)
        if known is not None:
            held = self._held[known]
            if held.fingerprint == fingerprint and (held.congestion_point, held.period) == (
                cp,
                order.period,
            ):
                return self._repeat(held)
        placement = site.placement(order.envelope.recipient_domain)
        grid = self._grids.get(limits.id)
        conflicts = self._conflicts(limits.id, order.period, powers, origin)
        if not powers:
            return Decision(
                Outcome.ACCEPTED,
                "the order activates no power",
                METHOD_AC,
                fraction=1.0,
                model_version=grid.model.version if grid else None,
            )
        request = _Request(
            order, origin, key, cp, limits, placement, powers, fingerprint, conflicts
        )
        if grid is None:
            return self._fallback(request, f"zone {limits.id!r} has no grid model", None, None)
        now = self._clock()
        model = grid.model
        age = now - model.created
        if age > limits.max_model_age:
            return self._fallback(
                request,
                f"the grid model {model.version} of zone {limits.id!r} is "
                f"{age.total_seconds() / 3600:.1f} h old (max_model_age_hours "
                f"{limits.max_model_age.total_seconds() / 3600:g})",
                model.version,
                model.created,
            )
        isps = sorted(powers)
        vec = grid.vector(placement)
        amounts = np.array([powers[i] for i in isps], dtype=np.float64)
        states, flows = self._states_for(
            limits, grid, order.period, isps, now, candidate=(amounts, vec)
        )
        assert flows is not None
        base_time = min(s.time for s in states)
        for isp, state in zip(isps, states, strict=True):
            stale = self._stale(limits, state, isp, now)
            if stale is not None:
                return self._fallback(request, stale, model.version, base_time)
        sol, m = flows
        g = self._excess(grid, states, m, sol.converged)
        for isp, state in zip(isps, states, strict=True):
            if not state.converged:
                return self._fallback(
                    request,
                    f"the power flow of zone {limits.id!r} in ISP {isp} (base state and "
                    "accepted activations) does not converge",
                    model.version,
                    base_time,
                )
        context = _Context(request, grid, states, isps, amounts, vec, base_time)
        if not (g > 0).any():
            return self._accept(context, sol, m, g, 1.0)
        return self._curtail(context, sol, m, g, allow_curtail)

    def _repeat(self, held: _Held) -> Decision:
        """The same order again from the same origin to the same recipient: it holds its
        power already."""
        curtailed = held.fraction < 1.0
        return Decision(
            Outcome.CURTAILED if curtailed else Outcome.ACCEPTED,
            f"gridcheck: order {held.message_id} from {held.origin} is already "
            + (f"curtailed to {held.fraction:.3f}" if curtailed else "accepted")
            + " and holds its power; nothing is reserved again",
            METHOD_AC,
            fraction=held.fraction,
        )

    def _conflicts(
        self, zone: str, period: date, powers: Mapping[int, int], origin: str
    ) -> tuple[Conflict, ...]:
        """Accepted activations of the other side (ISO vs DSO) in the opposite direction."""
        mine = self._roles.get(origin)
        if mine not in (Role.ISO, Role.DSO):
            return ()
        other = Role.DSO if mine is Role.ISO else Role.ISO
        found: list[Conflict] = []
        for isp, power in sorted(powers.items()):
            side = self._sides.get((zone, period, isp, other, power < 0), {})
            for token, held_power in side.items():
                held = self._held[token]
                found.append(Conflict(held.message_id, held.origin, other.value, isp, held_power))
        return tuple(found)

    def _states_for(
        self,
        limits: ZoneLimits,
        grid: _Grid,
        period: date,
        isps: Sequence[int],
        now: datetime,
        candidate: tuple[Array, Array] | None = None,
    ) -> tuple[list[_State], tuple[Solution, Array] | None]:
        """The AC state of base + ledger in each ISP (cached, the base alone when the ISP
        holds no order, else solved: a base that does not converge is a fail-safe case
        whatever a candidate would do) and, given (amounts, vec), the AC flows with a
        candidate added."""
        known: list[_State | None] = []
        for isp in isps:
            state = grid.states.get((period, isp))
            if state is None and not self._isp_tokens.get((limits.id, period, isp)):
                state = grid.bases.get((period, isp))
            known.append(state)
        missing = [k for k, state in enumerate(known) if state is None]
        if missing:  # solved in one batch, whether or not a candidate follows
            built = [self._base(limits, grid, period, isps[k], now) for k in missing]
            p_rows, q_rows = [b[0] for b in built], [b[1] for b in built]
            sol = grid.solver.solve(np.stack(p_rows), np.stack(q_rows))
            m = grid.metrics(sol)
            for row, (k, (p, q, time, forecast_cp)) in enumerate(zip(missing, built, strict=True)):
                lim, temporary = self._limit_row(limits, grid, period, isps[k])
                state = _State(
                    p=p,
                    q=q,
                    time=time,
                    forecast_cp=forecast_cp,
                    converged=bool(sol.converged[row]),
                    m=m[row],
                    interface_p_w=float(sol.interface_p_w[row]),
                    lim=lim,
                    cap=np.where(m[row] > lim, m[row] + WORSE_EPS * grid.scale, lim),
                    scale=grid.scale_for(lim),
                    temporary=temporary,
                )
                known[k] = state
                if state.converged:
                    grid.states[(period, isps[k])] = state
                    if not self._isp_tokens.get((limits.id, period, isps[k])):
                        grid.bases[(period, isps[k])] = state
        states = [state for state in known if state is not None]
        if candidate is None:
            return states, None
        amounts, vec = candidate
        return states, self._solve(grid, states, amounts, vec)

    def _base(
        self, limits: ZoneLimits, grid: _Grid, period: date, isp: int, now: datetime
    ) -> tuple[Array, Array, datetime, str | None]:
        """(p, q, time, congestion point of the oldest forecast) of base + accepted
        activations in one ISP."""
        model = grid.model
        factor = self._profile_factor(limits, period, isp)
        p = model.base_p_w * factor
        q = model.base_q_var * factor
        time, forecast_cp = model.created, None
        forecasts = []
        for cp in self._zone_cps[limits.id]:
            forecast = self._forecasts.get((cp, period))
            if forecast is not None and isp in forecast.powers:
                forecasts.append((cp, forecast))
        for cp, _ in forecasts:  # the DSO's own forecast replaces the model's power there
            p[grid.vector(self._cps[cp].nodes) > 0] = 0.0
        for cp, forecast in forecasts:
            p += forecast.powers[isp] * grid.vector(self._cps[cp].nodes)
        for cp in self._zone_cps[limits.id]:  # the aggregators' portfolios add to it
            portfolio = self._portfolios.get((cp, period))
            if portfolio is not None and isp in portfolio.powers:
                p += portfolio.powers[isp] * grid.vector(self._cps[cp].nodes)
                forecasts.append((cp, portfolio))
        if forecasts:
            oldest_cp, oldest = min(forecasts, key=lambda f: f[1].time)
            time, forecast_cp = oldest.time, oldest_cp
        for token, power in self._isp_tokens.get((limits.id, period, isp), {}).items():
            if power:
                p = p + power * grid.vector(self._held[token].placement)
        return p, q, time, forecast_cp

    def _stale(self, limits: ZoneLimits, state: _State, isp: int, now: datetime) -> str | None:
        """Why a state's forecast is too old to check against, if it is."""
        age = now - state.time
        if state.forecast_cp is None or age <= limits.max_forecast_age:
            return None
        return (
            f"the forecast for {state.forecast_cp} in ISP {isp} is "
            f"{age.total_seconds() / 3600:.1f} h old (max_forecast_age_hours "
            f"{limits.max_forecast_age.total_seconds() / 3600:g})"
        )

    def _isp_start(self, period: date, isp: int) -> datetime:
        market = self._market
        return isp_start(period, market.time_zone, market.isp_duration, isp)

    def _profile_factor(self, limits: ZoneLimits, period: date, isp: int) -> float:
        profile = limits.load_profile
        if not profile:
            return 1.0
        local = self._isp_start(period, isp).astimezone(self._market.zone)
        minute = local.hour * 60 + local.minute
        return profile[minute * len(profile) // 1440]

    def _limit_row(
        self, limits: ZoneLimits, grid: _Grid, period: date, isp: int
    ) -> tuple[Array, str | None]:
        """The enforced limits in one ISP: the interface limit may be a temporary one."""
        lim = grid.lim.copy()
        interface = limits.interface_limit_w
        temporary = None
        start = self._isp_start(period, isp)
        end = start + self._market.isp_duration
        for t in self._temporary.values():
            overlaps = t.zone == limits.id and t.start < end and start < t.end
            if overlaps and (interface is None or t.interface_limit_w < interface):
                interface = t.interface_limit_w
                temporary = f"temporary limit {t.interface_limit_w / 1e6:g} MW" + (
                    f" ({t.reason})" if t.reason else ""
                )
        if interface is not None:
            lim[-1] = interface * (1.0 - limits.thermal_margin)
        return lim, temporary

    def _solve(
        self, grid: _Grid, states: Sequence[_State], amounts: Array, vec: Array
    ) -> tuple[Solution, Array]:
        """AC flows of each ISP's state plus `amounts[k]` (W) placed by `vec`."""
        p = _stacked([s.p for s in states]) + amounts[:, None] * vec[None, :]
        q = _stacked([s.q for s in states])
        sol = grid.solver.solve(p, q)
        return sol, grid.metrics(sol)

    def _scale(self, grid: _Grid, states: Sequence[_State]) -> Array:
        return _stacked([s.scale for s in states])

    def _excess(
        self, grid: _Grid, states: Sequence[_State], m: Array, converged: npt.NDArray[np.bool_]
    ) -> Array:
        """(K, M) how far each metric is past what it may reach, in its scale (> 0 blocks)."""
        g = (m - _stacked([s.cap for s in states])) / self._scale(grid, states)
        g[np.isnan(g)] = -math.inf
        g[~converged] = math.inf
        return g

    # -- decisions ----------------------------------------------------------------------

    def _binding(
        self,
        grid: _Grid,
        state: _State,
        isp: int,
        j: int,
        m: float,
        interface_p_w: float,
    ) -> Binding:
        element, kind, metric = grid.element(j)
        limit = float(state.lim[j])
        safety = float(grid.safety[j])
        if metric == "v_min":
            return Binding(element, kind, metric, isp, -m, -limit, safety)
        if metric == "interface_mw":
            margin = limit / (1.0 - grid.theta) - limit
            return Binding(
                element, kind, metric, isp, interface_p_w / 1e6, limit / 1e6, margin / 1e6
            )
        return Binding(element, kind, metric, isp, m, limit, safety)

    def _accept(
        self, ctx: _Context, sol: Solution, m: Array, g: Array, fraction: float
    ) -> Decision:
        """Reserve what the flow `sol` (of the reserved powers, excess `g`) was checked on."""
        req, grid = ctx.request, ctx.grid
        k, j = divmod(int(np.argmax(g)), g.shape[1])
        isp = ctx.isps[k]
        binding = self._binding(
            grid, ctx.states[k], isp, int(j), float(m[k, j]), float(sol.interface_p_w[k])
        )
        reserved = self._reserved(ctx, fraction)
        token = self._new_token()
        order = req.order
        zone = req.limits.id
        for isp_k, power in reserved.items():
            self._reserve(token, req.key, req.cp, zone, order.period, req.placement, isp_k, power)
        held = self._held.get(token)
        if held is not None:
            held.fingerprint, held.fraction = req.fingerprint, fraction
        if held is not None and req.key not in self._tokens:  # a live order's token is kept
            self._tokens[req.key] = token
        # the flow just solved is the next check's starting state in these ISPs
        cache = grid.states
        for row, isp_k in enumerate(ctx.isps):
            before = ctx.states[row]
            lim = before.lim
            cache[(order.period, isp_k)] = _State(
                p=before.p + reserved.get(isp_k, 0) * ctx.vec,
                q=before.q,
                time=before.time,
                forecast_cp=before.forecast_cp,
                converged=True,
                m=m[row],
                interface_p_w=float(sol.interface_p_w[row]),
                lim=lim,
                cap=np.where(m[row] > lim, m[row] + WORSE_EPS * grid.scale, lim),
                scale=before.scale,
                temporary=before.temporary,
            )
        reservations = tuple((req.cp, order.period, i, p) for i, p in sorted(reserved.items()))
        least = self._describe(binding, ctx.states[k], int(j), grid)
        if fraction >= 1.0:
            outcome = Outcome.ACCEPTED
            reason = (
                f"AC power flow of zone {zone!r}: safe in all {len(ctx.isps)} ISPs with the "
                f"accepted activations; least margin: ISP {isp} ({self._local(order, isp)}) "
                f"{least}"
            )
        else:
            outcome = Outcome.CURTAILED
            reason = (
                f"AC power flow of zone {zone!r}: curtailed to {fraction:.3f} of the ordered "
                f"power; binding: ISP {isp} ({self._local(order, isp)}) {least}"
            )
        return Decision(
            outcome,
            reason + self._conflict_text(ctx.request.conflicts),
            METHOD_AC,
            binding=binding,
            reservations=reservations,
            reservation=token if reservations else None,
            fraction=fraction,
            conflicts=req.conflicts,
            model_version=grid.model.version,
            base_state_time=ctx.base_time,
        )

    def _reserved(self, ctx: _Context, fraction: float) -> dict[int, int]:
        """The watts a fraction of the order holds per ISP (toward zero: never more)."""
        return {
            isp: math.trunc(power * fraction)
            for isp, power in zip(ctx.isps, ctx.amounts, strict=True)
            if math.trunc(power * fraction)
        }

    def _curtail(self, ctx: _Context, sol: Solution, m: Array, g: Array, allow: bool) -> Decision:
        """Curtail to the largest safe fraction, or reject naming an estimate of it."""
        grid, req = ctx.grid, ctx.request
        k, j = divmod(int(np.argmax(g)), g.shape[1])
        isp = ctx.isps[k]
        if bool(sol.converged[k]):
            binding: Binding | None = self._binding(
                grid, ctx.states[k], isp, j, float(m[k, j]), float(sol.interface_p_w[k])
            )
            what = self._describe(binding, ctx.states[k], j, grid) if binding else ""
        else:
            binding = None
            what = "a power flow that does not converge (voltage collapse)"
        search = _FractionSearch(self, ctx, m, g, sol)
        if not allow:  # the sender resends what fits: an estimate serves, without more flows
            estimate = search.estimate()
            if estimate is None:
                largest = ""
            elif estimate >= 0.0005:  # what prints as more than 0.000
                largest = (
                    f"; roughly {estimate:.3f} of it might fit "
                    f"({self._power_text(ctx, estimate)}): a linear estimate along the order, "
                    "not checked in AC"
                )
            else:
                largest = "; no fraction of it is safe"
            return self._reject(ctx, isp, what + largest, binding)
        found = search.run()
        alpha = found.lo
        # a curtailment carries something: below ALPHA_TOL (the bracket's width) it is refused
        if alpha >= ALPHA_TOL and found.lo_flow is not None and self._reserved(ctx, alpha):
            lo_sol, lo_m = found.lo_flow
            decision = self._accept(ctx, lo_sol, lo_m, found.lo_excess, alpha)
            # name the element that binds just above α, at its value at α
            _, hi_g, hi_sol = found.hi_flow
            kb, jb = (int(x) for x in np.unravel_index(int(np.argmax(hi_g)), hi_g.shape))
            if not bool(hi_sol.converged[kb]):
                return decision
            bound = self._binding(
                grid,
                ctx.states[kb],
                ctx.isps[kb],
                jb,
                float(lo_m[kb, jb]),
                float(lo_sol.interface_p_w[kb]),
            )
            text = self._describe(bound, ctx.states[kb], jb, grid)
            reason = (
                f"AC power flow of zone {req.limits.id!r}: curtailed to {alpha:.3f} of the "
                f"ordered power; binding: ISP {ctx.isps[kb]} "
                f"({self._local(req.order, ctx.isps[kb])}) {text}; the whole order would "
                f"have {what} in ISP {isp}"
            )
            return Decision(
                decision.outcome,
                reason + self._conflict_text(req.conflicts),
                decision.method,
                binding=bound,
                reservations=decision.reservations,
                reservation=decision.reservation,
                fraction=decision.fraction,
                conflicts=decision.conflicts,
                model_version=decision.model_version,
                base_state_time=decision.base_state_time,
            )
        # the search ends within about ALPHA_TOL of the largest safe fraction (if any)
        return self._reject(
            ctx,
            isp,
            what + f"; less than about {ALPHA_TOL:.1%} of it is safe, too little to carry out",
            binding,
        )

    def _reject(self, ctx: _Context, isp: int, what: str, binding: Binding | None) -> Decision:
        req = ctx.request
        return Decision(
            Outcome.REJECTED,
            f"AC power flow of zone {req.limits.id!r}: ISP {isp} "
            f"({self._local(req.order, isp)}): this order would have {what}"
            + self._conflict_text(req.conflicts),
            METHOD_AC,
            binding=binding,
            conflicts=req.conflicts,
            model_version=ctx.grid.model.version,
            base_state_time=ctx.base_time,
        )

    def _power_text(self, ctx: _Context, alpha: float) -> str:
        reserved = self._reserved(ctx, alpha)
        return ", ".join(f"ISP {i}: {p} W" for i, p in sorted(reserved.items())) or "0 W"

    def _flows_at(self, ctx: _Context, alphas: Sequence[float]) -> tuple[Solution, Array]:
        """AC flows of each ISP at each fraction (the watts reserved for it), in one batch.

        Rows are fraction-major: row a·K + k is fraction a in ISP k.
        """
        states = list(ctx.states) * len(alphas)
        amounts = np.array(
            [math.trunc(p * a) for a in alphas for p in ctx.amounts], dtype=np.float64
        )
        return self._solve(ctx.grid, states, amounts, ctx.vec)

    # -- fail safe ----------------------------------------------------------------------

    def _fallback(
        self,
        req: _Request,
        why: str,
        model_version: str | None,
        base_time: datetime | None,
    ) -> Decision:
        """The grid cannot be checked: hold to the zone's default limit, or reject."""
        order, cp, limit = req.order, req.cp, req.limits.default_limit_w
        conflicts = self._conflict_text(req.conflicts)
        if limit is None:
            return Decision(
                Outcome.REJECTED,
                f"gridcheck: {why}; zone {req.limits.id!r} has no default_limit_w, and the "
                "check rejects what it cannot check" + conflicts,
                METHOD_FAIL_SAFE,
                conflicts=req.conflicts,
                model_version=model_version,
                base_state_time=base_time,
            )
        worst: Binding | None = None
        for isp, power in sorted(req.powers.items()):
            total = self.accepted_power(cp, order.period, isp) + power
            if abs(total) > limit and (worst is None or abs(total) > abs(worst.predicted)):
                worst = Binding(cp, "congestion_point", "flex_power_w", isp, total, limit)
        if worst is not None:
            return Decision(
                Outcome.REJECTED,
                f"gridcheck: {why}; held to the pre-agreed default limit {limit} W of {cp}: "
                f"ISP {worst.isp} ({self._local(order, worst.isp)}) would hold "
                f"{int(worst.predicted)} W, {int(abs(worst.predicted) - limit)} W over it"
                + conflicts,
                METHOD_DEFAULT_LIMIT,
                binding=worst,
                conflicts=req.conflicts,
                model_version=model_version,
                base_state_time=base_time,
            )
        token = self._new_token()
        for isp, power in sorted(req.powers.items()):
            self._reserve(
                token, req.key, cp, req.limits.id, order.period, req.placement, isp, power
            )
        self._held[token].fingerprint = req.fingerprint
        self._tokens.setdefault(req.key, token)
        headroom = min(limit - abs(self.accepted_power(cp, order.period, i)) for i in req.powers)
        tightest = min(
            req.powers, key=lambda i: limit - abs(self.accepted_power(cp, order.period, i))
        )
        return Decision(
            Outcome.ACCEPTED,
            f"gridcheck: {why}; held to the pre-agreed default limit {limit} W of {cp} "
            f"instead (least headroom left {headroom} W)" + conflicts,
            METHOD_DEFAULT_LIMIT,
            binding=Binding(
                cp,
                "congestion_point",
                "flex_power_w",
                tightest,
                self.accepted_power(cp, order.period, tightest),
                limit,
            ),
            reservations=tuple((cp, order.period, i, p) for i, p in sorted(req.powers.items())),
            reservation=token,
            fraction=1.0,
            conflicts=req.conflicts,
            model_version=model_version,
            base_state_time=base_time,
        )

    # -- words --------------------------------------------------------------------------

    def _describe(self, binding: Binding, state: _State, j: int, grid: _Grid) -> str:
        """E.g. `line Line 3-4 at 104.2 % of its rating (limit 98.0 %)`."""
        b = binding
        before = state.m[j]
        already = bool(before > state.lim[j])
        if b.metric == "loading":
            text = (
                f"{b.element_type} {b.element} at {b.predicted * 100:.1f} % of its rating "
                f"(limit {b.limit * 100:.1f} %)"
            )
            was = f"{before * 100:.1f} %"
        elif b.metric in ("v_max", "v_min"):
            text = f"node {b.element} at {b.predicted:.4f} pu ({b.metric} limit {b.limit:.4f} pu)"
            was = f"{abs(before):.4f} pu"
        else:
            limit = f"{b.limit:.3f} MW" + (f", {state.temporary}" if state.temporary else "")
            text = f"the TSO-DSO interface at {b.element} at {b.predicted:.3f} MW (limit ±{limit})"
            was = f"{state.interface_p_w / 1e6:.3f} MW"
        if already:
            text += f", already past its limit before this order ({was})"
        return text

    @staticmethod
    def _local(order: FlexOrder, isp: int) -> str:
        return _local_start(order.period, order.time_zone, order.isp_duration, isp)

    @staticmethod
    def _conflict_text(conflicts: Sequence[Conflict]) -> str:
        if not conflicts:
            return ""
        listed = ", ".join(
            f"{c.role} {c.origin} order {c.order_message_id} ({c.power} W in ISP {c.isp})"
            for c in conflicts[:CONFLICTS_NAMED]
        )
        more = len(conflicts) - CONFLICTS_NAMED
        if more > 0:  # the decision's conflicts field (and the audit) has them all
            listed += f" and {more} more"
        return f"; conflict: opposite-direction activation of the other side: {listed}"

    # -- traffic light and re-validation ------------------------------------------------

    def traffic_light(self, congestion_point: str, period: date, isp: int) -> GridRegime:
        """The USEF regime of a congestion point in one ISP, from the check's headroom.

        Headroom: the least margin left (base + accepted activations) on the elements the
        congestion point's power moves, as a fraction of the enforced limit (voltages: of
        the band). Green at or above yellow_below; yellow below it; orange below
        orange_below (the safety margin is being used); red past a rated limit, or when
        the grid cannot be checked.
        """
        site = self._cps.get(congestion_point)
        limits = self._limits.get(site.zone) if site else None
        grid = self._grids.get(site.zone) if site else None
        if site is None or limits is None or grid is None:
            return GridRegime(
                TrafficLight.RED, None, None, f"{congestion_point}: no grid model to check on"
            )
        now = self._clock()
        if now - grid.model.created > limits.max_model_age:
            return GridRegime(TrafficLight.RED, None, None, "the grid model is stale")
        (state,), _ = self._states_for(limits, grid, period, [isp], now)
        stale = self._stale(limits, state, isp, now)
        if stale is not None or not state.converged:
            why = stale or "the power flow does not converge"
            return GridRegime(TrafficLight.RED, None, None, why)
        vec = grid.vector(site.nodes)
        sol, m = self._solve(grid, [state], np.array([site.probe_w]), vec)
        if not bool(sol.converged[0]):
            moved = np.ones(grid.size, dtype=bool)
        else:
            moved = np.abs(m[0] - state.m) / grid.scale > WORSE_EPS
        scale = self._scale(grid, [state])[0]
        headroom = _unchecked_to(math.inf, (state.lim - state.m) / scale)
        headroom[~moved] = math.inf
        j = int(np.argmin(headroom))
        h = float(headroom[j])
        if not math.isfinite(h):
            return GridRegime(TrafficLight.GREEN, None, None, "its power moves no limit")
        binding = self._binding(grid, state, isp, j, float(state.m[j]), state.interface_p_w)
        rated = grid.rated.copy()
        if math.isfinite(state.lim[-1]):
            rated[-1] = state.lim[-1] / (1.0 - limits.thermal_margin)
        over_rated = bool(((state.m > rated) & moved).any())
        if over_rated:
            colour = TrafficLight.RED
        elif h < limits.orange_below:
            colour = TrafficLight.ORANGE
        elif h < limits.yellow_below:
            colour = TrafficLight.YELLOW
        else:
            colour = TrafficLight.GREEN
        return GridRegime(
            colour,
            h,
            binding,
            f"headroom {h:.3f}: {self._describe(binding, state, j, grid)}",
        )

    def revalidate(self, zone: str, period: date | None = None) -> list[UnsafeOrder]:
        """Re-check every accepted activation of a zone (one period, or all) in AC.

        Call it when a new model or forecast arrives. An order is unsafe when a limit is
        broken in an ISP it covers and its power makes that metric worse (the same rule
        as the check); each is named with the element it breaks. When an ISP cannot be
        checked (stale inputs, no convergence) every order in it is reported.
        """
        limits = self._limits.get(zone)
        grid = self._grids.get(zone)
        if limits is None:
            raise ValueError(f"unknown zone {zone!r}")
        keys = sorted(
            (p, isp)
            for (z, p, isp), tokens in self._isp_tokens.items()
            if z == zone and (period is None or p == period) and any(tokens.values())
        )
        now = self._clock()
        out: list[UnsafeOrder] = []
        for p, isp in keys:
            tokens = {t: w for t, w in self._isp_tokens[(zone, p, isp)].items() if w}
            if grid is None or now - grid.model.created > limits.max_model_age:
                why = "no grid model" if grid is None else "the grid model is stale"
                out += self._unsafe(tokens, p, isp, None, why)
                continue
            self._forget_one(zone, p, isp)
            (state,), _ = self._states_for(limits, grid, p, [isp], now)
            stale = self._stale(limits, state, isp, now)
            if stale is not None or not state.converged:
                why = stale or "the power flow does not converge"
                out += self._unsafe(tokens, p, isp, None, why)
                continue
            if not (state.m > state.lim).any():
                continue
            # each order left out in turn: does its power make a broken limit worse?
            order_tokens = list(tokens)
            drop = np.stack(
                [tokens[t] * grid.vector(self._held[t].placement) for t in order_tokens]
            )
            p_without = state.p[None, :] - drop
            q_without = np.broadcast_to(state.q, p_without.shape).copy()
            sol = grid.solver.solve(p_without, q_without)
            m_without = grid.metrics(sol)
            broken = state.m > state.lim
            for row, token in enumerate(order_tokens):
                if not bool(sol.converged[row]):
                    worse = broken
                else:
                    worse = broken & (state.m > m_without[row] + WORSE_EPS * grid.scale)
                if not worse.any():
                    continue
                excess = np.where(worse, (state.m - state.lim) / grid.scale, -math.inf)
                j = int(np.argmax(excess))
                binding = self._binding(grid, state, isp, j, float(state.m[j]), state.interface_p_w)
                text = self._describe(binding, state, j, grid)
                out += self._unsafe({token: tokens[token]}, p, isp, binding, text)
        return out

    def _forget_one(self, zone: str, period: date, isp: int) -> None:
        grid = self._grids.get(zone)
        if grid is not None:
            grid.states.pop((period, isp), None)

    def _unsafe(
        self,
        tokens: Mapping[str, int],
        period: date,
        isp: int,
        binding: Binding | None,
        why: str,
    ) -> list[UnsafeOrder]:
        out = []
        for token in tokens:
            held = self._held[token]
            out.append(
                UnsafeOrder(
                    held.origin, held.message_id, held.congestion_point, period, isp, binding, why
                )
            )
        return out


class _FractionSearch:
    """The largest fraction α of an order whose flows are safe in every ISP.

    Notes §3: sized on a model along the order, confirmed in AC. The flows at α = 0 (the
    state without the order) and α = 1 are known when the search starts.

    - `estimate`: every metric linear in α between those two (the chord), and the least α at
      which one reaches what it may. Branch loading and |interface P| are convex in α (|S| of
      a P and Q that are linear in α): the chord lies above them and reaches their limit
      first, so for them the estimate errs small; a voltage may bend either way, so where a
      voltage binds it can err large. No power flow: a rejection that cannot be curtailed
      names this estimate, as one.
    - `run`: AC at the estimate, then rounds of: a model through the three AC flows nearest
      the bracket [lo safe, hi unsafe] (branch loading² and interface P² quadratic in α, i.e.
      |S| rebuilt from P and Q linear in α, never |I| linearised; voltages quadratic), its
      first crossing in the bracket solved in closed form, and AC at that crossing less
      ALPHA_BACKOFF and ALPHA_TOL above that, until AC brackets α within ALPHA_TOL.
      A flow that does not converge leaves no model: AC on an even grid in the bracket.
      α = lo is AC-confirmed safe in every ISP.
    """

    def __init__(
        self, check: PowerFlowCheck, ctx: _Context, m1: Array, g1: Array, sol1: Solution
    ) -> None:
        self.check, self.ctx = check, ctx
        grid, states = ctx.grid, ctx.states
        self.cap = _stacked([s.cap for s in states])
        self.scale = check._scale(grid, states)
        m0 = _stacked([s.m for s in states])
        g0 = _unchecked_to(-math.inf, (m0 - self.cap) / self.scale)
        # α -> (metrics, excess, flow); the flow is None at α = 0 (nothing reserved)
        self.points: dict[float, tuple[Array, Array, Solution | None]] = {
            0.0: (m0, g0, None),
            1.0: (m1, g1, sol1),
        }
        self.lo, self.hi = 0.0, 1.0
        self.squared = grid.squared
        self.solves = 0

    @property
    def lo_flow(self) -> tuple[Solution, Array] | None:
        m, _, sol = self.points[self.lo]
        return (sol, m) if sol is not None else None

    @property
    def lo_excess(self) -> Array:
        return self.points[self.lo][1]

    @property
    def hi_flow(self) -> tuple[Array, Array, Solution]:
        m, g, sol = self.points[self.hi]
        assert sol is not None
        return m, g, sol

    def estimate(self) -> float | None:
        """The chord's α (see the class), or None when the order's own flow did not converge."""
        g0, g1 = self.points[0.0][1], self.points[1.0][1]
        if not np.isfinite(g1).any() or np.isposinf(g1).any():
            return None
        over = g1 > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            alphas = np.where(over, g0 / (g0 - g1), math.inf)
        return float(min(max(alphas.min(), 0.0), 1.0))

    def run(self) -> _FractionSearch:
        guess = self.estimate()
        if guess is None or not 0.0 < guess < 1.0:
            self._solve([k / 8 for k in range(1, 8)])
        else:
            self._solve([guess])
        for _ in range(MAX_AC_ROUNDS):
            if self.hi - self.lo <= ALPHA_TOL * 1.0001:
                break
            guess = self._model_guess()
            if guess is None:
                step = (self.hi - self.lo) / 8
                self._solve([self.lo + step * k for k in range(1, 8)])
                continue
            # AC just below the model's crossing and ALPHA_TOL above that: when the model
            # is right, the bracket closes in this round
            low = max(guess - ALPHA_BACKOFF, self.lo)
            self._solve([low, low + ALPHA_TOL * 0.999])
        return self

    def _solve(self, alphas: Sequence[float]) -> None:
        todo = sorted({a for a in alphas if self.lo < a < self.hi})
        if not todo:  # the guess fell outside: halve the bracket
            todo = [(self.lo + self.hi) / 2]
        ctx = self.ctx
        k_count = len(ctx.states)
        sol, m = self.check._flows_at(ctx, todo)
        self.solves += len(todo) * k_count
        g = self.check._excess(ctx.grid, list(ctx.states) * len(todo), m, sol.converged)
        for a, alpha in enumerate(todo):
            rows = slice(a * k_count, (a + 1) * k_count)
            self.points[alpha] = (m[rows], g[rows], _rows_of(sol, rows))
        # the bracket: the least unsafe α, and the largest safe α below it
        self.hi = min(a for a, (_, g_a, _) in self.points.items() if g_a.max() > 0)
        self.lo = max(a for a, (_, g_a, _) in self.points.items() if g_a.max() <= 0 and a < self.hi)

    def _model_guess(self) -> float | None:
        """The first α in (lo, hi] at which the model through lo, hi and the AC flow
        nearest outside them reaches a limit."""
        outside = [a for a in self.points if a < self.lo or a > self.hi]
        if not outside:
            return None
        third = min(outside, key=lambda a: min(abs(a - self.lo), abs(a - self.hi)))
        alphas = sorted((self.lo, self.hi, third))
        flows = [self.points[a] for a in alphas]
        if any(f[2] is not None and not bool(f[2].converged.all()) for f in flows):
            return None
        squared = self.squared
        vander = np.array([[1.0, a, a * a] for a in alphas])
        ys = np.stack([np.where(squared, f[0] ** 2, f[0]) for f in flows])  # (3, K, M)
        c0, c1, c2 = np.einsum("ij,jkm->ikm", np.linalg.inv(vander), ys)  # c0 + c1·α + c2·α²
        # what each metric may reach, in the model's terms (loading and |P| squared)
        target = np.where(squared, np.square(np.maximum(self.cap, 0.0)), self.cap)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            c0 = c0 - target
            root = np.sqrt(c1 * c1 - 4.0 * c2 * c0)
            linear = -c0 / c1
            first = (-c1 - root) / (2.0 * c2)
            second = (-c1 + root) / (2.0 * c2)
            flat = np.abs(c2) <= 1e-12 * (np.abs(c1) + np.abs(c0))
            roots = np.stack([np.where(flat, linear, first), np.where(flat, linear, second)])
            rising = (2.0 * c2 * roots + c1) >= 0  # crossing into the unsafe side
            inside = (roots > self.lo) & (roots <= self.hi) & rising & np.isfinite(roots)
        candidates = roots[inside & np.isfinite(target)[None]]
        if candidates.size == 0:
            return None
        return float(candidates.min())


@dataclass(frozen=True, slots=True)
class _Request:
    order: FlexOrder
    origin: str
    key: OrderKey  # (origin, MessageID, recipient domain)
    cp: str
    limits: ZoneLimits
    placement: Placement
    powers: Mapping[int, int]
    fingerprint: tuple[tuple[tuple[int, int], ...], str]
    conflicts: tuple[Conflict, ...]


@dataclass(frozen=True, slots=True)
class _Context:
    request: _Request
    grid: _Grid
    states: Sequence[_State]
    isps: Sequence[int]
    amounts: Array
    vec: Array
    base_time: datetime


@functools.lru_cache(maxsize=4096)
def _local_start(period: date, time_zone: str, isp_duration: timedelta, isp: int) -> str:
    """An ISP's start in local time, to the minute (reason texts name many ISPs again)."""
    local = isp_start(period, time_zone, isp_duration, isp).astimezone(ZoneInfo(time_zone))
    return local.isoformat(timespec="minutes")


def _stacked(rows: Sequence[Array]) -> Array:
    """(K, M) of K rows; one row is a view, not a copy (most orders cover one ISP)."""
    return rows[0][None] if len(rows) == 1 else np.stack(rows)


def _unchecked_to(value: float, g: Array) -> Array:
    """Set entries of elements without a limit (an unrated branch, an islanded node: NaN)."""
    return np.where(np.isnan(g), value, g)


def _rows_of(sol: Solution, rows: slice) -> Solution:
    return Solution(
        u_pu=sol.u_pu[rows],
        loading=sol.loading[rows],
        interface_p_w=sol.interface_p_w[rows],
        converged=sol.converged[rows],
    )


def _shares(weights: Sequence[float]) -> list[float]:
    """Shares by weight as `split_power` makes them (equal when every weight is 0)."""
    total = sum(weights)
    if not total:
        return [1.0 / len(weights)] * len(weights)
    return [w / total for w in weights]


def _placement(pairs: Iterable[tuple[str, float]]) -> Placement:
    merged: dict[str, float] = {}
    for node, share in pairs:
        merged[node] = merged.get(node, 0.0) + share
    return tuple(sorted(merged.items()))


def congestion_points_from(directory: Directory) -> dict[str, CongestionPointGrid]:
    """Where each congestion point in a grid zone has its flexibility, per aggregator.

    An aggregator's order is shared among its resources there by power range, as
    `gateway.pipeline.split_power` does, each at its grid node (else the congestion point's).
    """
    out: dict[str, CongestionPointGrid] = {}
    for cp, settings in directory.congestion_points.items():
        if settings.zone is None:
            continue
        by_aggregator: dict[str, Placement] = {}
        everyone: list[tuple[str, float]] = []
        for participant in directory.participants.values():
            resources = directory.resources(participant, cp)
            if not resources or not participant.uftp_domain:
                continue
            nodes = [r.grid_node or settings.grid_node for r in resources]
            if any(n is None for n in nodes):
                continue
            weights = [float(max(r.max_w - r.min_w, 0)) for r in resources]
            shares = _shares(weights)
            by_aggregator[participant.uftp_domain] = _placement(
                (n, s) for n, s in zip(nodes, shares, strict=True) if n is not None
            )
            everyone += [(n, w) for n, w in zip(nodes, weights, strict=True) if n is not None]
        if settings.grid_node is not None:
            nodes_of_cp: Placement = ((settings.grid_node, 1.0),)
        elif everyone:
            shares = _shares([w for _, w in everyone])
            nodes_of_cp = _placement((n, s) for (n, _), s in zip(everyone, shares, strict=True))
        else:
            continue
        out[cp] = CongestionPointGrid(
            settings.zone, nodes_of_cp, by_aggregator, probe_w=float(settings.limit_w)
        )
    return out
