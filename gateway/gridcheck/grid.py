"""A DSO zone's grid model and its exact AC power flow.

Conversion choices:

* **One path to power-grid-model (PGM).** Every source becomes a pandapower net first: a
  pandapower JSON directly, a CGMES 2.4.15 set through cimpy and the mapping in `_CgmesNet`.
  power-grid-model-io's `PandaPowerConverter` turns the net's buses, lines, transformers,
  switches, shunts and the external grid into PGM input; its parity with `pandapower.runpp` is
  ≤1.2e-6 pu (notes/gridcheck.md §2). Loads, static generators and storage are *not* handed to
  it: they are summed per node into `base_p_w`/`base_q_var` (load sign convention, constant
  power; pandapower storage is a load, as PGM refuses storage), and each node carries exactly
  one PGM `sym_load` whose p/q every scenario sets.
* **A stiff interface.** The PGM source gets `sk=1e20`: power-grid-model-io maps the external
  grid's short-circuit power to a source impedance, which moves voltages by ~0.004 pu against
  pandapower. `u_ref` and its angle come from the external grid (CGMES: the SvVoltage at the
  ExternalNetworkInjection's node, else 1.0 pu).
* **CGMES mapping** (IEC 61970-452/456, CGMES 2.4.15): a node per TopologicalNode (the TP
  profile already merges closed switches; a retained closed switch between two nodes becomes a
  bus-bus switch); a line per ACLineSegment (r, x, bch, gch of the whole segment; rating = the
  CurrentLimit of the longest acceptable duration — PATL, or a limit type without a duration —
  the smallest over the segment's limit sets); a two-winding transformer per PowerTransformer
  (r/x/g/b summed over both ends, each referred to end 1's ratedU; ratedS; vector-group clock;
  a RatioTapChanger's step from SSH, else SvTapStep, else normalStep). EnergyConsumer,
  SynchronousMachine, AsynchronousMachine and EquivalentInjection p/q are all in the CGMES load
  sign convention (positive = flow out of the node); when an element's SSH p and q are 0 or
  absent its SvPowerFlow is used. Generators are PQ injections at their operating point: the
  check studies changes around it, not voltage control. A terminal with `connected=false`
  opens that end; an element cimpy reads but this mapping does not model (three-winding or
  phase-shifting transformers, series compensators, equivalent branches, non-linear shunts,
  SVCs) is refused rather than silently dropped.
* **Hardened XML.** Every CGMES file passes `gateway.xmlsafe.parse` (no DTD, no entities,
  size and depth caps) before cimpy sees its bytes; the md:FullModel header (time stamp,
  profiles) is read from that tree, as cimpy drops it.
* pandapower and cimpy take seconds to import, so they are imported only by the loaders; the
  solver needs PGM and numpy only.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from power_grid_model import (
    CalculationMethod,
    CalculationType,
    ComponentType,
    DatasetType,
    LoadGenType,
    PowerGridModel,
    TapChangingStrategy,
    initialize_array,
)

# re-exported without __all__ (mypy: not explicitly exported); the public name is errors.*
from power_grid_model.errors import PowerGridError  # type: ignore[attr-defined]

from gateway import xmlsafe
from gateway.errors import GridgateError

if TYPE_CHECKING:
    from pandapower import pandapowerNet

__all__ = [
    "AcSolver",
    "Branch",
    "GridModel",
    "GridModelError",
    "Node",
    "Solution",
    "from_pandapower",
    "load_cgmes",
    "load_model",
    "load_pandapower_json",
]

FloatArray = npt.NDArray[np.float64]
PgmInput = dict[ComponentType, npt.NDArray[Any]]
PgmOutput = dict[ComponentType, npt.NDArray[Any]]
# the output fields `AcSolver.solve` reads, per component
_OUTPUT_FIELDS = {
    ComponentType.node: ("u_pu", "energized"),
    ComponentType.source: ("p",),
    ComponentType.line: ("loading",),
    ComponentType.transformer: ("loading",),
}

# PGM computes line and transformer susceptances at this frequency; gridgate's zones are in
# the synchronous area of continental Europe
SYSTEM_FREQUENCY_HZ = 50.0
# a CGMES EQ of a large DSO is tens of MB; xmlsafe's default cap (5 MB) is for messages
CGMES_MAX_BYTES = 256 * 1024 * 1024
# "stiff interface": an infinite short-circuit power at the TSO-DSO interface (see above)
STIFF_SOURCE_SK_VA = 1e20
# up to this many scenarios are solved one by one through `_DirectCalls`; more go to one PGM
# batch call, whose per-scenario cost is lower once its fixed cost (a model copy) is spread
DIRECT_MAX_SCENARIOS = 8
# PGM's Newton-Raphson stops when its last step moved no voltage by more than this (pu). The
# convergence is quadratic, so the answer is then far closer than the step: measured against
# 1e-8 over 200 random states each of CIGRE MV and Kerber LV, ≤ 8.2e-13 pu apart, and 45 % of
# the flows need one iteration less (a quarter of their time)
NR_TOLERANCE_PU = 1e-6

_log = logging.getLogger(__name__)


class GridModelError(GridgateError, ValueError):
    """A grid model that cannot be loaded; the message names the file and the rule."""


@dataclass(frozen=True, slots=True)
class Node:
    index: int  # position in GridModel.nodes; the solver's column
    name: str  # CGMES TopologicalNode name (mRID when not unique), or pandapower bus name
    u_rated_v: float  # nominal voltage, V


@dataclass(frozen=True, slots=True)
class Branch:
    index: int  # position in GridModel.branches; the solver's column
    name: str  # CGMES name (mRID when not unique), or pandapower line/trafo name
    kind: str  # "line" | "transformer"
    from_node: int  # Node.index
    to_node: int
    rating: float  # lines: rated current A; transformers: rated apparent power VA; NaN: unknown


# eq=False: the arrays make field-wise equality ambiguous; a model is compared by identity
@dataclass(frozen=True, eq=False)
class GridModel:
    """A zone's network, its own operating point, and the PGM input the solver builds on.

    `pgm_input` is private to `AcSolver`: node row i is `nodes[i]`; the line rows followed by
    the transformer rows are `branches`; each node has one `sym_load` (ids in node order).
    """

    zone: str
    version: str
    created: datetime
    nodes: tuple[Node, ...]
    branches: tuple[Branch, ...]
    slack: int
    base_p_w: FloatArray
    base_q_var: FloatArray
    pgm_input: PgmInput
    _nodes_by_name: dict[str, Node] = field(init=False, repr=False)
    _branches_by_name: dict[str, Branch] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.created.tzinfo is None:
            raise ValueError(f"zone {self.zone}: the model time stamp must be tz-aware")
        n = len(self.nodes)
        if self.base_p_w.shape != (n,) or self.base_q_var.shape != (n,):
            raise ValueError(f"zone {self.zone}: base_p_w/base_q_var must have shape ({n},)")
        for array in (self.base_p_w, self.base_q_var):
            array.flags.writeable = False
        object.__setattr__(self, "_nodes_by_name", {node.name: node for node in self.nodes})
        object.__setattr__(self, "_branches_by_name", {b.name: b for b in self.branches})

    def node(self, name: str) -> Node:
        try:
            return self._nodes_by_name[name]
        except KeyError:
            raise KeyError(f"zone {self.zone}: no node {name!r} in model {self.version}") from None

    def branch(self, name: str) -> Branch:
        try:
            return self._branches_by_name[name]
        except KeyError:
            raise KeyError(
                f"zone {self.zone}: no line or transformer {name!r} in model {self.version}"
            ) from None


@dataclass(frozen=True, eq=False)
class Solution:
    u_pu: FloatArray  # (S, N) pu of u_rated; NaN for a node without a source (island)
    loading: FloatArray  # (S, B) fraction of the rating, max of both ends; NaN if unrated
    interface_p_w: FloatArray  # (S,) drawn from the TSO at the slack, positive = import
    converged: npt.NDArray[np.bool_]  # (S,); a scenario that did not converge has NaN rows


class AcSolver:
    """Newton-Raphson power flows of one model: one scenario at a time through the C core
    (`_DirectCalls`), or many per PGM batch call."""

    def __init__(self, model: GridModel, *, direct: bool = True) -> None:
        """`direct=False` solves every scenario through PGM's public API (for comparison)."""
        self.model = model
        self._pgm = PowerGridModel(model.pgm_input, system_frequency=SYSTEM_FREQUENCY_HZ)
        self._load_ids = model.pgm_input[ComponentType.sym_load]["id"].copy()
        self._has_lines = ComponentType.line in model.pgm_input
        self._has_transformers = ComponentType.transformer in model.pgm_input
        # whole rows of these components: measured faster than PGM's per-attribute
        # (columnar) output filter, which costs ~0.3 ms per call in Python on CIGRE MV
        self._outputs = {ComponentType.node, ComponentType.source}
        if self._has_lines:
            self._outputs.add(ComponentType.line)
        if self._has_transformers:
            self._outputs.add(ComponentType.transformer)

        self._single = initialize_array(
            DatasetType.update, ComponentType.sym_load, len(self._load_ids)
        )
        self._single["id"] = self._load_ids
        self._nan_output: PgmOutput = {
            kind: np.full(
                (1, len(model.pgm_input[kind])),
                np.nan,
                dtype=[(name, "f8") for name in _OUTPUT_FIELDS[kind]],
            )
            for kind in self._outputs
        }
        self._direct = _DirectCalls.create(self) if direct else None

    @property
    def direct(self) -> bool:
        """Whether single scenarios go through the C core directly (see `_DirectCalls`)."""
        return self._direct is not None

    def solve(self, p_w: npt.ArrayLike, q_var: npt.ArrayLike) -> Solution:
        """Solve S scenarios of total net consumption per node (W/var, positive = consumption)."""
        p = np.asarray(p_w, dtype=np.float64)
        q = np.asarray(q_var, dtype=np.float64)
        n = len(self.model.nodes)
        if p.ndim != 2 or p.shape[1] != n or q.shape != p.shape:
            raise ValueError(
                f"zone {self.model.zone}: p_w and q_var must both have shape (S, {n}), "
                f"got {p.shape} and {q.shape}"
            )
        # PGM reads NaN in update data as "keep the input value": it would silently solve the
        # model's base point for that node
        if not (np.isfinite(p).all() and np.isfinite(q).all()):
            raise ValueError(f"zone {self.model.zone}: p_w and q_var must be finite")
        scenarios = p.shape[0]
        if self._direct is not None and scenarios <= DIRECT_MAX_SCENARIOS:
            return self._direct.solve(p, q)
        if scenarios == 1:
            result, converged = self._solve_one(p[0], q[0])
        else:
            result, converged = self._solve_batch(p, q)
        return self._solution(result, converged)

    def _solution(self, result: PgmOutput, converged: npt.NDArray[np.bool_]) -> Solution:
        scenarios = len(converged)
        node = result[ComponentType.node]
        u_pu = np.where(node["energized"] == 1, node["u_pu"], np.nan)
        parts = [
            result[kind]["loading"]
            for kind, present in (
                (ComponentType.line, self._has_lines),
                (ComponentType.transformer, self._has_transformers),
            )
            if present
        ]
        loading = np.concatenate(parts, axis=1) if parts else np.empty((scenarios, 0))
        interface = result[ComponentType.source]["p"][:, 0].copy()
        u_pu[~converged] = np.nan
        loading[~converged] = np.nan
        interface[~converged] = np.nan
        return Solution(u_pu=u_pu, loading=loading, interface_p_w=interface, converged=converged)

    def _solve_batch(self, p: FloatArray, q: FloatArray) -> tuple[PgmOutput, npt.NDArray[np.bool_]]:
        """One PGM batch call; a failed scenario is reported, the others still solve."""
        update = initialize_array(DatasetType.update, ComponentType.sym_load, p.shape)
        update["id"] = self._load_ids
        update["p_specified"] = p
        update["q_specified"] = q
        result = self._pgm.calculate_power_flow(
            calculation_method=CalculationMethod.newton_raphson,
            error_tolerance=NR_TOLERANCE_PU,
            update_data={ComponentType.sym_load: update},
            output_component_types=self._outputs,
            threading=0,  # measured: multi-threaded batches were slower on 2 cores
            continue_on_batch_error=True,
        )
        converged = np.ones(p.shape[0], dtype=np.bool_)
        error = self._pgm.batch_error
        if error is not None:
            converged[np.asarray(error.failed_scenarios, dtype=np.intp)] = False
        return result, converged

    def _solve_one(self, p: FloatArray, q: FloatArray) -> tuple[PgmOutput, npt.NDArray[np.bool_]]:
        """One scenario through the public API: update the model in place, then a plain
        (non-batch) calculation.

        A batch of one makes PGM copy the model for the scenario: measured 0.83 ms instead of
        1.28 ms on Kerber LV, 0.44 instead of 0.50 ms on CIGRE MV. Every call sets every
        node's load, so the in-place update leaves nothing behind; it does make a solver
        unsafe to share between threads (gridgate's pipeline is one asyncio loop).
        """
        self._single["p_specified"] = p
        self._single["q_specified"] = q
        self._pgm.update(update_data={ComponentType.sym_load: self._single})
        try:
            result = self._pgm.calculate_power_flow(
                calculation_method=CalculationMethod.newton_raphson,
                error_tolerance=NR_TOLERANCE_PU,
                output_component_types=self._outputs,
                threading=0,
            )
        except PowerGridError:  # diverged, or a singular system: not converged
            return self._nan_output, np.zeros(1, dtype=np.bool_)
        return {kind: rows[None] for kind, rows in result.items()}, np.ones(1, dtype=np.bool_)


class _DirectCalls:
    """Single scenarios through power-grid-model's C core, on datasets built once.

    `PowerGridModel.update` and `calculate_power_flow` build their C datasets, options and
    output arrays anew on every call: measured ~0.3 ms of Python per call, against 16 µs for
    the Newton-Raphson calculation itself on CIGRE MV (0.21 ms on Kerber LV). Here the update
    array, the output arrays, their C views and the options are made once, and each scenario
    is the core's `update_model` and `calculate` on them: the two calls the public methods make
    (same options: power flow, symmetric, Newton-Raphson, NR_TOLERANCE_PU, 20 iterations).

    These names live in `power_grid_model._core`, which the package does not promise to keep:
    `create` returns None, and `AcSolver` uses the public API, when one is missing or when the
    direct result of the model's base point differs from the public API's.
    """

    def __init__(self, solver: AcSolver) -> None:
        from power_grid_model._core import data_handling, error_handling
        from power_grid_model._core.power_grid_core import get_power_grid_core

        pgm = solver._pgm
        self._solver = solver
        self._core = get_power_grid_core()
        self._find_error = error_handling.find_error
        self._handle = pgm._model  # the C model the public methods use
        self._update = initialize_array(
            DatasetType.update, ComponentType.sym_load, len(solver._load_ids)
        )
        self._update["id"] = solver._load_ids
        self._update_view = data_handling.prepare_update_view(
            {ComponentType.sym_load: self._update}
        )
        counts = {kind: len(solver.model.pgm_input[kind]) for kind in solver._outputs}
        self._output: PgmOutput = {
            kind: initialize_array(DatasetType.sym_output, kind, count)
            for kind, count in counts.items()
        }
        self._output_view = data_handling.prepare_output_view(self._output, DatasetType.sym_output)
        self._options = PowerGridModel._options(  # as calculate_power_flow builds them
            calculation_type=CalculationType.power_flow,
            symmetric=True,
            error_tolerance=NR_TOLERANCE_PU,
            max_iterations=20,
            calculation_method=CalculationMethod.newton_raphson,
            tap_changing_strategy=TapChangingStrategy.disabled,
            threading=0,
            experimental_features="disabled",
        )
        self._branches = [
            self._output[kind]
            for kind, present in (
                (ComponentType.line, solver._has_lines),
                (ComponentType.transformer, solver._has_transformers),
            )
            if present
        ]

    @classmethod
    def create(cls, solver: AcSolver) -> _DirectCalls | None:
        model = solver.model
        base_p, base_q = model.base_p_w[None, :], model.base_q_var[None, :]
        try:
            direct = cls(solver)
            got = direct.solve(base_p, base_q)
        except (ImportError, AttributeError, TypeError, ValueError, PowerGridError) as exc:
            _log.warning(
                "power-grid-model's core calls are not as expected (%s): the "
                "public API solves every scenario, at ~0.3 ms more each",
                exc,
            )
            return None
        want = solver._solution(*solver._solve_one(model.base_p_w, model.base_q_var))
        same = all(
            np.array_equal(a, b, equal_nan=True)
            for a, b in (
                (got.u_pu, want.u_pu),
                (got.loading, want.loading),
                (got.interface_p_w, want.interface_p_w),
                (got.converged, want.converged),
            )
        )
        if not same:
            _log.warning(
                "power-grid-model's core calls solve the base point of %s otherwise "
                "than its public API: the public API solves every scenario",
                model.version,
            )
            return None
        return direct

    def solve(self, p: FloatArray, q: FloatArray) -> Solution:
        scenarios = p.shape[0]
        solver = self._solver
        n, b = len(solver.model.nodes), len(solver.model.branches)
        u_pu = np.empty((scenarios, n))
        loading = np.empty((scenarios, b))
        interface = np.empty(scenarios)
        converged = np.zeros(scenarios, dtype=np.bool_)
        core, handle, update = self._core, self._handle, self._update
        update_ptr = self._update_view.get_dataset_ptr()
        output_ptr = self._output_view.get_dataset_ptr()
        node, source = self._output[ComponentType.node], self._output[ComponentType.source]
        for s in range(scenarios):
            update["p_specified"] = p[s]
            update["q_specified"] = q[s]
            core.update_model(handle, update_ptr)
            if core.error_code():  # only p and q change: not a state PGM can be in
                raise self._find_error(decode_error=False) or PowerGridError("update failed")
            core.calculate(handle, self._options.opt, output_ptr, None)
            if core.error_code():  # diverged, or a singular system
                u_pu[s] = loading[s] = interface[s] = np.nan
                continue
            converged[s] = True
            u_pu[s] = node["u_pu"]
            u_pu[s, node["energized"] != 1] = np.nan
            at = 0
            for rows in self._branches:
                loading[s, at : at + len(rows)] = rows["loading"]
                at += len(rows)
            interface[s] = source["p"][0]
        return Solution(u_pu=u_pu, loading=loading, interface_p_w=interface, converged=converged)


# --- pandapower -----------------------------------------------------------------------------

# tables with elements the mapping does not model; refused when they hold in-service rows
_PP_UNSUPPORTED = {
    "gen": "voltage-controlled generators (PV nodes)",
    "trafo3w": "three-winding transformers",
    "ward": "ward equivalents",
    "xward": "extended ward equivalents",
    "impedance": "impedance branches",
    "dcline": "DC lines",
    "motor": "motors",
    "asymmetric_load": "asymmetric loads",
    "asymmetric_sgen": "asymmetric static generators",
    "svc": "static var compensators",
    "tcsc": "thyristor-controlled series capacitors",
    "ssc": "static synchronous compensators",
    "vsc": "voltage source converters",
}
# what power-grid-model-io converts; loads and generators are aggregated by `from_pandapower`
_PP_NETWORK_TABLES = ("bus", "line", "trafo", "ext_grid", "switch", "shunt")
_PP_EMPTY_TABLES = (
    *_PP_UNSUPPORTED,
    "load",
    "sgen",
    "storage",
)


def from_pandapower(
    net: pandapowerNet,
    *,
    zone: str,
    version: str | None = None,
    created: datetime | None = None,
    source: str = "pandapower net",
) -> GridModel:
    """Build the zone's model from a pandapower net (its loads, sgens, storage = base point).

    `version` defaults to a hash of the net's JSON, `created` to now (UTC); `source` names the
    net in error messages.
    """
    import pandapower  # 1.5 s to import: only the loaders need it

    if float(net.f_hz) != SYSTEM_FREQUENCY_HZ:
        raise GridModelError(f"{source}: the system frequency must be 50 Hz, got {net.f_hz} Hz")
    for table, what in _PP_UNSUPPORTED.items():
        if table in net and len(net[table]) and bool(net[table]["in_service"].any()):
            raise GridModelError(f"{source}: {what} (table {table!r}) are not supported")
    ext_grids = net.ext_grid[net.ext_grid["in_service"].astype(bool)]
    if len(ext_grids) != 1:
        raise GridModelError(
            f"{source}: a model needs exactly one in-service ext_grid (the slack at the TSO-DSO "
            f"interface), found {len(ext_grids)}"
        )
    trafo = net.trafo
    if "tap_changer_type" in trafo and len(trafo):
        kinds = trafo["tap_changer_type"].dropna()
        if bool((~kinds.isin(["Ratio"])).any()):
            raise GridModelError(
                f"{source}: only ratio tap changers are supported (trafo tap_changer_type)"
            )
    if version is None:
        version = hashlib.sha256(pandapower.to_json(net).encode()).hexdigest()[:16]
    created = datetime.now(UTC) if created is None else _as_utc(created)

    bus = net.bus
    positions = {int(b): i for i, b in enumerate(bus.index)}
    nodes = tuple(
        Node(index=i, name=name, u_rated_v=float(vn) * 1e3)
        for i, (name, vn) in enumerate(
            zip(_unique_names(bus["name"], bus.index, "bus"), bus["vn_kv"], strict=True)
        )
    )
    base_p, base_q = _pp_injections(net, positions)
    pgm_input = _pp_to_pgm(net, source)
    _check_node_order(pgm_input, len(nodes), source)

    branches: list[Branch] = []
    line_names = _unique_names(net.line["name"], net.line.index, "line")
    for (name, row), i_n in zip(
        zip(line_names, net.line.itertuples(), strict=True),
        pgm_input.get(ComponentType.line, np.empty(0, dtype=[("i_n", "f8")]))["i_n"],
        strict=True,
    ):
        branches.append(
            Branch(
                len(branches),
                name,
                "line",
                positions[row.from_bus],
                positions[row.to_bus],
                float(i_n),
            )
        )
    trafo_names = _unique_names(net.trafo["name"], net.trafo.index, "trafo")
    for (name, row), sn in zip(
        zip(trafo_names, net.trafo.itertuples(), strict=True),
        pgm_input.get(ComponentType.transformer, np.empty(0, dtype=[("sn", "f8")]))["sn"],
        strict=True,
    ):
        branches.append(
            Branch(
                len(branches),
                name,
                "transformer",
                positions[row.hv_bus],
                positions[row.lv_bus],
                float(sn),
            )
        )
    names = Counter(b.name for b in branches)
    if clash := [name for name, count in names.items() if count > 1]:
        raise GridModelError(f"{source}: a line and a transformer share the name {clash[0]!r}")

    if unrated := [b.name for b in branches if math.isnan(b.rating)]:
        _log.warning(
            "%s: %d branches have no rating, their loading is unknown (NaN): %s",
            source,
            len(unrated),
            ", ".join(unrated[:10]),
        )
    pgm_input[ComponentType.sym_load] = _one_load_per_node(pgm_input, base_p, base_q)
    model = GridModel(
        zone=zone,
        version=version,
        created=created,
        nodes=nodes,
        branches=tuple(branches),
        slack=positions[int(ext_grids["bus"].iloc[0])],
        base_p_w=base_p,
        base_q_var=base_q,
        pgm_input=pgm_input,
    )
    _validate_pgm(model.pgm_input, source)
    return model


def load_pandapower_json(
    path: Path,
    *,
    zone: str,
    version: str | None = None,
    created: datetime | None = None,
) -> GridModel:
    """Load a net written by `pandapower.to_json`; version = hash of the file, created = mtime.

    pandapower JSON may name Python classes to rebuild (controllers): load only files from the
    operator's own configuration, never from a peer.
    """
    import pandapower  # 1.5 s to import: only the loaders need it

    path = Path(path)
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as e:
        raise GridModelError(f"{path}: pandapower JSON cannot be read: {e}") from e
    try:
        net = pandapower.from_json_string(data.decode("utf-8"))
    except Exception as e:  # pandapower raises anything from JSON, pandas and its own checks
        raise GridModelError(f"{path}: not a pandapower JSON network: {e}") from e
    if not isinstance(net, pandapower.pandapowerNet):
        raise GridModelError(
            f"{path}: not a pandapower JSON network: it holds a {type(net).__name__}, "
            "not a pandapowerNet"
        )
    return from_pandapower(
        net,
        zone=zone,
        version=version or hashlib.sha256(data).hexdigest()[:16],
        created=created or datetime.fromtimestamp(mtime, UTC),
        source=str(path),
    )


def _pp_injections(net: pandapowerNet, positions: dict[int, int]) -> tuple[FloatArray, FloatArray]:
    """Sum loads, storage (both consumption) and sgens (generation) per node, in W and var."""
    p = np.zeros(len(positions))
    q = np.zeros(len(positions))
    in_service_bus = net.bus["in_service"].astype(bool)
    for table, sign in (("load", 1.0), ("storage", 1.0), ("sgen", -1.0)):
        if table not in net or not len(net[table]):
            continue
        rows = net[table]
        live = rows["in_service"].astype(bool) & in_service_bus.reindex(rows["bus"]).to_numpy()
        rows = rows[live]
        scaling = rows["scaling"].to_numpy(dtype=float) if "scaling" in rows else 1.0
        at = np.array([positions[int(b)] for b in rows["bus"]], dtype=np.intp)
        np.add.at(p, at, sign * rows["p_mw"].to_numpy(dtype=float) * scaling * 1e6)
        np.add.at(q, at, sign * rows["q_mvar"].to_numpy(dtype=float) * scaling * 1e6)
    return p, q


def _pp_to_pgm(net: pandapowerNet, source: str) -> PgmInput:
    """Convert the net's network tables to PGM input (no loads or generators)."""
    from power_grid_model_io.converters import PandaPowerConverter

    tables: dict[str, Any] = {}  # pandas frames
    for name in _PP_NETWORK_TABLES:
        tables[name] = net[name].copy()
    for name in _PP_EMPTY_TABLES:
        if name in net:
            tables[name] = net[name].iloc[0:0]
    # power-grid-model-io leaves out-of-service buses to the caller (its TODO): open what
    # touches them, as pandapower does
    dead = set(net.bus.index[~net.bus["in_service"].astype(bool)])
    if dead:
        for name, ends in (("line", ("from_bus", "to_bus")), ("trafo", ("hv_bus", "lv_bus"))):
            table = tables[name]
            touches = table[list(ends)].isin(dead).any(axis=1)
            table.loc[touches, "in_service"] = False
        tables["ext_grid"] = tables["ext_grid"][~tables["ext_grid"]["bus"].isin(dead)]
    # the "i0 clipped to p0/sn" notice is expected for magnetising data given as losses only
    converter = PandaPowerConverter(system_frequency=SYSTEM_FREQUENCY_HZ, log_level=logging.ERROR)
    try:
        pgm_input, _ = converter.load_input_data(tables, make_extra_info=False)
    except Exception as e:  # the converter raises RuntimeError, KeyError, ValueError
        raise GridModelError(f"{source}: power-grid-model-io cannot convert the net: {e}") from e
    pgm_input = {ComponentType(k): v for k, v in pgm_input.items() if len(v)}
    lines = pgm_input.get(ComponentType.line)
    if lines is not None:
        # the converter divides g by c only where c != 0 and leaves the rest uninitialised
        lines["tan1"] = np.where(lines["c1"] == 0.0, 0.0, lines["tan1"])
        lines["tan0"] = np.where(lines["c0"] == 0.0, 0.0, lines["tan0"])
    sources = pgm_input[ComponentType.source]
    sources["sk"] = STIFF_SOURCE_SK_VA
    return pgm_input


def _check_node_order(pgm_input: PgmInput, n: int, source: str) -> None:
    """The solver relies on PGM node row i being bus row i; the converter numbers from 0."""
    ids = pgm_input[ComponentType.node]["id"]
    if len(ids) != n or not np.array_equal(ids, np.arange(n)):
        raise GridModelError(f"{source}: unexpected node numbering from power-grid-model-io")


def _one_load_per_node(
    pgm_input: PgmInput, base_p: FloatArray, base_q: FloatArray
) -> npt.NDArray[Any]:
    """One constant-power sym_load per node, carrying the node's base consumption."""
    next_id = 1 + max(int(array["id"].max()) for array in pgm_input.values())
    nodes = pgm_input[ComponentType.node]["id"]
    loads = initialize_array(DatasetType.input, ComponentType.sym_load, len(nodes))
    loads["id"] = np.arange(next_id, next_id + len(nodes))
    loads["node"] = nodes
    loads["status"] = 1
    loads["type"] = LoadGenType.const_power
    loads["p_specified"] = base_p
    loads["q_specified"] = base_q
    return loads


def _validate_pgm(pgm_input: PgmInput, source: str) -> None:
    """Refuse input PGM would refuse, naming PGM's rule, before a solver is built on it."""
    from power_grid_model.validation import (
        ValidationException,
        assert_valid_input_data,
    )

    try:
        assert_valid_input_data(pgm_input, symmetric=True)
    except ValidationException as e:
        raise GridModelError(f"{source}: the converted model is not valid PGM input: {e}") from e


def _unique_names(names: Iterable[Any], index: Iterable[Any], kind: str) -> list[str]:
    """Names from a pandapower `name` column; "<kind> <idx>" if unset, suffixed if repeated."""
    raw = [
        str(name) if isinstance(name, str) and name.strip() else f"{kind} {idx}"
        for name, idx in zip(names, index, strict=True)
    ]
    counts = Counter(raw)
    return [
        name if counts[name] == 1 else f"{name} ({kind} {idx})"
        for name, idx in zip(raw, index, strict=True)
    ]


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- CGMES ----------------------------------------------------------------------------------

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_MD = "http://iec.ch/TC57/61970-552/ModelDescription/1#"
# Model.profile URI fragments, most specific first (ENTSO-E and IEC 61970-45x spellings)
_PROFILE_KEYS = (
    ("Boundary", "BD"),
    ("SteadyStateHypothesis", "SSH"),
    ("StateVariables", "SV"),
    ("Topology", "TP"),
    ("Equipment", "EQ"),
    ("Diagram", "DL"),
    ("Geographical", "GL"),
    ("Dynamics", "DY"),
)
_PROFILES_FOR_CIMPY = ("EQ", "BD", "TP", "SSH", "SV")
_PROFILE_NAMES = {"EQ": "Equipment", "TP": "Topology", "SSH": "SteadyStateHypothesis"}
# properties whose cimpy default cannot be told from an explicit value (False, 0)
_EXPLICIT = ("Terminal.connected", "Switch.open", "TapChanger.step", "ShuntCompensator.sections")
# classes the mapping does not model and must not drop silently
_CGMES_UNSUPPORTED = {
    "SeriesCompensator": "series compensators",
    "EquivalentBranch": "equivalent branches",
    "NonlinearShuntCompensator": "non-linear shunt compensators",
    "StaticVarCompensator": "static var compensators",
    "ACDCConverter": "HVDC converters",
}


@dataclass(eq=False)  # hashed by identity: one object per file
class _CgmesFile:
    path: Path
    data: bytes
    root: Any  # lxml element
    profiles: set[str]
    cim_namespace: str


def load_cgmes(paths: Sequence[Path], *, zone: str, version: str | None = None) -> GridModel:
    """Load a CGMES 2.4.15 set: EQ + TP + (SSH and/or SV); DL/GL files are ignored."""
    files = [_read_cgmes_file(Path(p)) for p in sorted(Path(p) for p in paths)]
    names = ", ".join(f.path.name for f in files) or "no files"
    by_profile: dict[str, list[_CgmesFile]] = defaultdict(list)
    for f in files:
        for profile in f.profiles:
            by_profile[profile].append(f)
    for required in ("EQ", "TP"):
        if required not in by_profile:
            raise GridModelError(
                f"CGMES ({names}): the {required} ({_PROFILE_NAMES[required]}) profile is "
                "missing; a grid model needs EQ, TP and SSH or SV"
            )
    if "SSH" not in by_profile and "SV" not in by_profile:
        raise GridModelError(
            f"CGMES ({names}): neither an SSH nor an SV profile; a grid model needs EQ, TP and "
            "SSH or SV (the operating point)"
        )
    _require_cimpy_version(files, names)

    # EQ first: cimpy takes the namespaces from the first file
    chosen = [f for profile in _PROFILES_FOR_CIMPY for f in by_profile.get(profile, ())]
    chosen = list(dict.fromkeys(chosen))
    topology = _cimpy_import(chosen, names)
    explicit = _explicit_values(f.root for f in chosen)
    net = _CgmesNet(topology, explicit, has_sv="SV" in by_profile, source=names).build()
    digest = hashlib.sha256()
    for f in chosen:
        digest.update(f.data)
    return from_pandapower(
        net,
        zone=zone,
        version=version or digest.hexdigest()[:16],
        created=_model_time(by_profile, names),
        source=f"CGMES ({names})",
    )


def load_model(source: Path | Sequence[Path], *, zone: str, format: str) -> GridModel:
    """Load a zone's model: format "cgmes" (files, or a directory of *.xml) or "pandapower"."""
    if format == "pandapower":
        if not isinstance(source, Path | str):
            raise GridModelError("pandapower: the model is one JSON file, not a list of files")
        return load_pandapower_json(Path(source), zone=zone)
    if format == "cgmes":
        if isinstance(source, Path | str):
            path = Path(source)
            paths = sorted(path.glob("*.xml")) if path.is_dir() else [path]
        else:
            paths = [Path(p) for p in source]
        return load_cgmes(paths, zone=zone)
    raise GridModelError(f"zone {zone}: unknown model format {format!r} (cgmes, pandapower)")


def _read_cgmes_file(path: Path) -> _CgmesFile:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GridModelError(f"{path}: CGMES file cannot be read: {e}") from e
    try:
        root = xmlsafe.parse(data, max_bytes=CGMES_MAX_BYTES)
    except xmlsafe.XmlError as e:
        raise GridModelError(f"{path}: CGMES file refused by XML rule {e.rule}: {e.detail}") from e
    if root.tag != f"{{{_RDF}}}RDF":
        raise GridModelError(f"{path}: CGMES (IEC 61970-552) requires an rdf:RDF document")
    header = root.find(f"{{{_MD}}}FullModel")
    if header is None:
        raise GridModelError(f"{path}: IEC 61970-552: no md:FullModel header")
    profiles = {
        _profile_key(uri.text or "") for uri in header.findall(f"{{{_MD}}}Model.profile")
    } - {""}
    if not profiles:
        raise GridModelError(f"{path}: IEC 61970-552: the md:FullModel names no known profile")
    return _CgmesFile(path, data, root, profiles, root.nsmap.get("cim", ""))


def _profile_key(uri: str) -> str:
    return next((key for fragment, key in _PROFILE_KEYS if fragment in uri), "")


def _require_cimpy_version(files: Sequence[_CgmesFile], names: str) -> None:
    import importlib.util

    cim100 = any("CIM100" in f.cim_namespace for f in files)
    if not cim100:
        return
    if importlib.util.find_spec("cimpy.cgmes_v3_0") is None:
        raise GridModelError(
            f"CGMES ({names}): CGMES 3.0 (CIM100) is not supported by the installed cimpy; "
            "supported: CGMES 2.4.15 (cim16)"
        )
    raise GridModelError(
        f"CGMES ({names}): CGMES 3.0 (CIM100) is not mapped yet; supported: CGMES 2.4.15 (cim16)"
    )


class _QuietCimpy(logging.Filter):
    """Drop cimpy's notices about the Name/NameType classes it does not implement (harmless)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Module Name", "Missing Name"))


def _cimpy_import(files: Sequence[_CgmesFile], names: str) -> dict[str, Any]:
    import cimpy  # only the CGMES loader needs it

    cimpy_log = logging.getLogger("cimpy.cimimport")
    if not any(isinstance(f, _QuietCimpy) for f in cimpy_log.filters):
        cimpy_log.addFilter(_QuietCimpy())
    # cimpy parses again, from the bytes xmlsafe already accepted (never from the path)
    streams = [io.BytesIO(f.data) for f in files]
    try:
        result = cimpy.cim_import(streams, "cgmes_v2_4_15")
    except Exception as e:  # cimpy raises KeyError, AttributeError, lxml errors
        raise GridModelError(f"CGMES ({names}): cimpy cannot read the set: {e!r}") from e
    topology: dict[str, Any] = result["topology"]
    return topology


def _explicit_values(roots: Iterable[Any]) -> dict[str, dict[str, str]]:
    """The values of `_EXPLICIT` properties as written in the files: property -> mRID -> text."""
    found: dict[str, dict[str, str]] = {prop: {} for prop in _EXPLICIT}
    about, ident = f"{{{_RDF}}}about", f"{{{_RDF}}}ID"
    for root in roots:
        for element in root:
            mrid = element.get(ident) or (element.get(about) or "").lstrip("#")
            for child in element:
                tag = child.tag
                if not isinstance(tag, str):
                    continue
                prop = tag.rsplit("}", 1)[-1]
                if prop in found:
                    found[prop][mrid] = (child.text or "").strip()
    return found


def _model_time(by_profile: dict[str, list[_CgmesFile]], names: str) -> datetime:
    """The operating point's time: scenarioTime, else created, of the SV, SSH, else EQ header."""
    for profile in ("SV", "SSH", "EQ"):
        for f in by_profile.get(profile, ()):
            header = f.root.find(f"{{{_MD}}}FullModel")
            for prop in ("Model.scenarioTime", "Model.created"):
                text = header.findtext(f"{{{_MD}}}{prop}")
                if text and text.strip():
                    try:
                        return _as_utc(datetime.fromisoformat(text.strip()))
                    except ValueError as e:
                        raise GridModelError(
                            f"{f.path}: IEC 61970-552 md:{prop} is not an ISO 8601 time: {text}"
                        ) from e
    raise GridModelError(f"CGMES ({names}): no md:Model.scenarioTime or md:Model.created")


class _CgmesNet:
    """Map cimpy's CGMES objects to a pandapower net (see the module docstring)."""

    def __init__(
        self,
        topology: dict[str, Any],
        explicit: dict[str, dict[str, str]],
        *,
        has_sv: bool,
        source: str,
    ) -> None:
        # class name (and every base class name) -> objects, built once: `of` is called often
        self.by_class: dict[str, list[Any]] = defaultdict(list)
        for obj in topology.values():
            for cls in type(obj).__mro__:
                self.by_class[cls.__name__].append(obj)
        self.explicit = explicit
        self.has_sv = has_sv
        self.source = f"CGMES ({source})"
        self.terminals: dict[str, list[Any]] = defaultdict(list)
        for obj in self.of("Terminal"):
            # a reference to an object missing from the set stays unresolved (no mRID)
            equipment = getattr(obj.ConductingEquipment, "mRID", None)
            if equipment:
                self.terminals[equipment].append(obj)
        for terminals in self.terminals.values():
            terminals.sort(key=lambda t: t.sequenceNumber)
        self.bus_of: dict[str, int] = {}

    def of(self, cls: str) -> list[Any]:
        """The objects of a CIM class, its subclasses included."""
        return self.by_class.get(cls, [])

    def build(self) -> pandapowerNet:
        import pandapower as pp

        for cls, what in _CGMES_UNSUPPORTED.items():
            if self.of(cls):
                raise GridModelError(f"{self.source}: {what} ({cls}) are not supported")
        net = pp.create_empty_network(f_hz=SYSTEM_FREQUENCY_HZ)
        self._buses(net)
        self._lines(net)
        self._transformers(net)
        self._switches(net)
        self._injections(net)
        self._shunts(net)
        self._slack(net)
        return net

    # each element -------------------------------------------------------------------------

    def _buses(self, net: pandapowerNet) -> None:
        import pandapower as pp

        nodes = self.of("TopologicalNode")
        names = _names_or_mrids(nodes)
        kv = [self._nominal_kv(node) for node in nodes]
        for i, node in enumerate(nodes):
            self.bus_of[node.mRID] = i
        if nodes:
            pp.create_buses(net, len(nodes), kv, index=list(range(len(nodes))), name=names)

    def _nominal_kv(self, node: Any) -> float:
        base = node.BaseVoltage
        if base is None and node.ConnectivityNodeContainer is not None:
            base = getattr(node.ConnectivityNodeContainer, "BaseVoltage", None)
        if base is None or not base.nominalVoltage:
            raise GridModelError(
                f"{self.source}: TopologicalNode {node.mRID} has no BaseVoltage.nominalVoltage"
            )
        return float(base.nominalVoltage)

    def _ends(self, equipment: Any, count: int) -> list[tuple[int, bool]]:
        """(bus, connected) of each of the equipment's terminals, in sequence order."""
        terminals = self.terminals.get(equipment.mRID, [])
        if len(terminals) != count:
            raise GridModelError(
                f"{self.source}: {type(equipment).__name__} {equipment.mRID} has "
                f"{len(terminals)} terminals, expected {count}"
            )
        ends = []
        for terminal in terminals:
            node = terminal.TopologicalNode
            if node is None or node.mRID not in self.bus_of:
                raise GridModelError(
                    f"{self.source}: TP: terminal {terminal.mRID} of {equipment.mRID} has no "
                    "TopologicalNode"
                )
            ends.append((self.bus_of[node.mRID], self._connected(terminal)))
        return ends

    def _connected(self, terminal: Any) -> bool:
        value = self.explicit["Terminal.connected"].get(terminal.mRID)
        return value is None or value.lower() != "false"

    def _lines(self, net: pandapowerNet) -> None:
        import pandapower as pp

        segments = self.of("ACLineSegment")
        if not segments:
            return
        ratings = self._current_ratings()
        omega = 2 * math.pi * SYSTEM_FREQUENCY_HZ
        ends = [self._ends(s, 2) for s in segments]
        index = pp.create_lines_from_parameters(
            net,
            from_buses=[e[0][0] for e in ends],
            to_buses=[e[1][0] for e in ends],
            length_km=1.0,  # CGMES gives the whole segment's values
            r_ohm_per_km=[float(s.r) for s in segments],
            x_ohm_per_km=[float(s.x) for s in segments],
            c_nf_per_km=[float(s.bch) / omega * 1e9 for s in segments],
            g_us_per_km=[float(s.gch) * 1e6 for s in segments],
            max_i_ka=[ratings.get(s.mRID, math.nan) / 1e3 for s in segments],
            name=_names_or_mrids(segments),
        )
        for line, end in zip(index, ends, strict=True):
            for bus, connected in end:
                if not connected:
                    pp.create_switch(net, bus, int(line), et="l", closed=False)

    def _current_ratings(self) -> dict[str, float]:
        """Equipment mRID -> rated current, A: the longest-duration CurrentLimit, smallest set.

        PATL (by name or limitType) and a type without acceptableDuration count as permanent.
        A limit of 0 (NEPLAN writes unused "ShortTerm" limits as 0) is no limit.
        """
        best: dict[str, tuple[float, float]] = {}  # mRID -> (duration, value)
        for limit in self.of("CurrentLimit"):
            value = float(limit.value or 0.0)
            limit_set = limit.OperationalLimitSet
            if value <= 0.0 or limit_set is None:
                continue
            equipment = limit_set.Equipment
            if equipment is None and limit_set.Terminal is not None:
                equipment = limit_set.Terminal.ConductingEquipment
            if equipment is None:
                continue
            duration = _limit_duration(limit.OperationalLimitType)
            held = best.get(equipment.mRID)
            if held is None or duration > held[0] or (duration == held[0] and value < held[1]):
                best[equipment.mRID] = (duration, value)
        return {mrid: value for mrid, (_, value) in best.items()}

    def _transformers(self, net: pandapowerNet) -> None:
        import pandapower as pp

        ends_of: dict[str, list[Any]] = defaultdict(list)
        for end in self.of("PowerTransformerEnd"):
            if end.PowerTransformer is not None:
                ends_of[end.PowerTransformer.mRID].append(end)
        transformers = [t for t in self.of("PowerTransformer") if t.mRID in ends_of]
        names = _names_or_mrids(transformers)
        for transformer, name in zip(transformers, names, strict=True):
            ends = sorted(ends_of[transformer.mRID], key=lambda e: e.endNumber)
            if len(ends) != 2:
                raise GridModelError(
                    f"{self.source}: PowerTransformer {transformer.mRID} has {len(ends)} ends; "
                    "only two-winding transformers are supported"
                )
            self._transformer(net, pp, transformer, name, ends)

    def _transformer(
        self, net: pandapowerNet, pp: Any, transformer: Any, name: str, ends: list[Any]
    ) -> None:
        one, two = ends
        u1, u2 = float(one.ratedU), float(two.ratedU)
        s_mva = float(one.ratedS or two.ratedS)
        if u1 <= 0 or u2 <= 0 or s_mva <= 0:
            raise GridModelError(
                f"{self.source}: PowerTransformer {transformer.mRID} needs ratedU and ratedS"
            )
        # series impedance and magnetising admittance referred to end 1 (whichever end
        # carries them: both are summed)
        ratio2 = (u1 / u2) ** 2
        r = float(one.r) + float(two.r) * ratio2
        x = float(one.x) + float(two.x) * ratio2
        g = float(one.g) + float(two.g) / ratio2
        b = float(one.b) + float(two.b) / ratio2
        z_base = u1**2 / s_mva
        terminals = [self._terminal_of_end(end, transformer) for end in ends]
        buses = [self._ends_bus(t, transformer) for t in terminals]
        hv = 0 if u1 >= u2 else 1
        lv = 1 - hv
        clock = (int(two.phaseAngleClock or 0) - int(one.phaseAngleClock or 0)) % 12
        if hv == 1:
            clock = (-clock) % 12
        tap = self._ratio_tap(ends, hv, transformer)
        index = pp.create_transformer_from_parameters(
            net,
            hv_bus=buses[hv],
            lv_bus=buses[lv],
            sn_mva=s_mva,
            vn_hv_kv=max(u1, u2),
            vn_lv_kv=min(u1, u2),
            vkr_percent=r / z_base * 100,
            vk_percent=math.hypot(r, x) / z_base * 100,
            pfe_kw=g * u1**2 * 1e3,
            i0_percent=math.hypot(g, b) * z_base * 100,
            shift_degree=clock * 30.0,
            name=name,
            **tap,
        )
        for side, terminal in zip(("hv", "lv"), (terminals[hv], terminals[lv]), strict=True):
            if not self._connected(terminal):
                bus = buses[hv] if side == "hv" else buses[lv]
                pp.create_switch(net, bus, int(index), et="t", closed=False)

    def _terminal_of_end(self, end: Any, transformer: Any) -> Any:
        if end.Terminal is None:
            raise GridModelError(
                f"{self.source}: PowerTransformerEnd {end.mRID} of {transformer.mRID} has no "
                "Terminal"
            )
        return end.Terminal

    def _ends_bus(self, terminal: Any, equipment: Any) -> int:
        node = terminal.TopologicalNode
        if node is None or node.mRID not in self.bus_of:
            raise GridModelError(
                f"{self.source}: TP: terminal {terminal.mRID} of {equipment.mRID} has no "
                "TopologicalNode"
            )
        return self.bus_of[node.mRID]

    def _ratio_tap(self, ends: list[Any], hv: int, transformer: Any) -> dict[str, Any]:
        """pandapower tap columns from a RatioTapChanger; refuse an off-neutral phase shifter."""
        for changer in self.of("PhaseTapChanger"):
            if not any(changer.TransformerEnd is end for end in ends):
                continue
            if self._tap_step(changer) != changer.neutralStep:
                raise GridModelError(
                    f"{self.source}: PhaseTapChanger {changer.mRID} of {transformer.mRID} is "
                    "off its neutral step; phase-shifting transformers are not supported"
                )
        for changer in self.of("RatioTapChanger"):
            end = next((i for i, e in enumerate(ends) if changer.TransformerEnd is e), None)
            if end is None or not changer.stepVoltageIncrement:
                continue
            side = "hv" if end == hv else "lv"
            return {
                "tap_side": side,
                "tap_neutral": int(changer.neutralStep),
                "tap_min": int(changer.lowStep),
                "tap_max": int(changer.highStep),
                "tap_step_percent": float(changer.stepVoltageIncrement),
                "tap_pos": self._tap_step(changer),
                "tap_changer_type": "Ratio",
            }
        return {}

    def _tap_step(self, changer: Any) -> float:
        ssh = self.explicit["TapChanger.step"].get(changer.mRID)
        if ssh:
            return float(ssh)
        if changer.SvTapStep is not None:
            return float(changer.SvTapStep.position)
        for obj in self.of("SvTapStep"):
            if obj.TapChanger is changer:
                return float(obj.position)
        return float(changer.normalStep)

    def _switches(self, net: pandapowerNet) -> None:
        """A closed switch the TP profile kept between two nodes (retained) joins them."""
        import pandapower as pp

        for switch in self.of("Switch"):
            terminals = self.terminals.get(switch.mRID, [])
            if len(terminals) != 2 or not all(self._connected(t) for t in terminals):
                continue
            nodes = [t.TopologicalNode for t in terminals]
            if any(n is None for n in nodes) or nodes[0] is nodes[1]:
                continue
            ssh = self.explicit["Switch.open"].get(switch.mRID)
            is_open = ssh.lower() == "true" if ssh else bool(switch.normalOpen)
            if not is_open:
                pp.create_switch(
                    net,
                    self.bus_of[nodes[0].mRID],
                    self.bus_of[nodes[1].mRID],
                    et="b",
                    closed=True,
                    name=switch.name or switch.mRID,
                )

    def _injections(self, net: pandapowerNet) -> None:
        """Loads and generators at their operating point (CGMES load sign convention)."""
        import pandapower as pp

        buses: list[int] = []
        p_mw: list[float] = []
        q_mvar: list[float] = []
        names: list[str] = []
        for cls in ("EnergyConsumer", "SynchronousMachine", "AsynchronousMachine"):
            for equipment in self.of(cls):
                self._injection(equipment, buses, p_mw, q_mvar, names)
        for equipment in self.of("EquivalentInjection"):
            self._injection(equipment, buses, p_mw, q_mvar, names)
        if buses:
            pp.create_loads(net, buses, p_mw, q_mvar, name=names)

    def _injection(
        self,
        equipment: Any,
        buses: list[int],
        p_mw: list[float],
        q_mvar: list[float],
        names: list[str],
    ) -> None:
        ((bus, connected),) = self._ends(equipment, 1)
        if not connected:
            return
        p, q = float(equipment.p or 0.0), float(equipment.q or 0.0)
        terminal = self.terminals[equipment.mRID][0]
        flow = terminal.SvPowerFlow
        if p == 0.0 and q == 0.0 and self.has_sv and flow is not None:
            p, q = float(flow.p), float(flow.q)
        buses.append(bus)
        p_mw.append(p)
        q_mvar.append(q)
        names.append(equipment.name or equipment.mRID)

    def _shunts(self, net: pandapowerNet) -> None:
        import pandapower as pp

        for shunt in self.of("LinearShuntCompensator"):
            ((bus, connected),) = self._ends(shunt, 1)
            ssh = self.explicit["ShuntCompensator.sections"].get(shunt.mRID)
            if ssh:
                sections = float(ssh)
            elif shunt.SvShuntCompensatorSections is not None:
                sections = float(shunt.SvShuntCompensatorSections.sections)
            else:
                sections = float(shunt.normalSections)
            if not connected or sections == 0.0:
                continue
            vn = float(shunt.nomU) or float(net.bus.at[bus, "vn_kv"])
            pp.create_shunt(
                net,
                bus,
                q_mvar=-float(shunt.bPerSection) * sections * vn**2,
                p_mw=float(shunt.gPerSection) * sections * vn**2,
                vn_kv=vn,
                name=shunt.name or shunt.mRID,
            )

    def _slack(self, net: pandapowerNet) -> None:
        """The ExternalNetworkInjection: the slack, at its node's SvVoltage, else 1.0 pu."""
        import pandapower as pp

        injections = [e for e in self.of("ExternalNetworkInjection") if self._ends(e, 1)[0][1]]
        if len(injections) != 1:
            raise GridModelError(
                f"{self.source}: a model needs exactly one connected ExternalNetworkInjection "
                f"(the slack at the TSO-DSO interface), found {len(injections)}"
            )
        (injection,) = injections
        terminal = self.terminals[injection.mRID][0]
        node = terminal.TopologicalNode
        bus = self.bus_of[node.mRID]
        vm_pu, va_degree = 1.0, 0.0
        voltage = node.SvVoltage if self.has_sv else None
        if voltage is not None and voltage.v:
            vm_pu = float(voltage.v) / float(net.bus.at[bus, "vn_kv"])
            va_degree = float(voltage.angle)
        pp.create_ext_grid(
            net, bus, vm_pu=vm_pu, va_degree=va_degree, name=injection.name or injection.mRID
        )


def _limit_duration(limit_type: Any) -> float:
    """Acceptable duration of a limit type, s; permanent (PATL, or none given) is infinite."""
    if limit_type is None:
        return -1.0  # an unresolved type ranks below every known one
    kind = str(getattr(limit_type, "limitType", "") or "").lower()
    if (limit_type.name or "").upper() == "PATL" or kind.endswith("patl"):
        return math.inf
    duration = float(limit_type.acceptableDuration or 0)
    return duration if duration > 0 else math.inf


def _names_or_mrids(objects: Sequence[Any]) -> list[str]:
    """IdentifiedObject.name where it is set and unique among `objects`, else the mRID."""
    counts = Counter(obj.name for obj in objects if obj.name)
    return [obj.name if obj.name and counts[obj.name] == 1 else obj.mRID for obj in objects]
