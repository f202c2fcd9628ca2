"""The zone grid model (gateway.gridcheck.grid): loaders and AC solver against references.

References are independent of the loader: the CIGRE MV CGMES sample's own SV profile (NEPLAN's
power-flow result, read here with lxml) and `pandapower.runpp` on the nets written to JSON.
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from lxml import etree

from gateway.gridcheck.grid import (
    DIRECT_MAX_SCENARIOS,
    AcSolver,
    GridModel,
    GridModelError,
    Solution,
    _DirectCalls,
    from_pandapower,
    load_cgmes,
    load_model,
    load_pandapower_json,
)
from tests.conftest import require

RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
CIM = "{http://iec.ch/TC57/2012/CIM-schema-cim16#}"
CIGRE = "cim/samples/cgmes/CIGRE_MV_CGMES2.4.15"


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cigre_dir(specs: Path) -> Path:
    path = specs / CIGRE
    require(path.is_dir(), f"CIGRE MV CGMES sample not found at {path} (GRIDGATE_SPECS)")
    return path


@pytest.fixture(scope="module")
def cigre_cgmes(cigre_dir: Path) -> GridModel:
    return load_model(cigre_dir, zone="cigre-mv", format="cgmes")


class Sample:
    """The CIGRE MV sample as plain lxml reads it: what the loader must reproduce."""

    def __init__(self, directory: Path) -> None:
        self.files = {p.stem.rsplit("_", 1)[1]: p for p in directory.glob("*.xml")}
        eq, tp, sv = (etree.parse(str(self.files[k])).getroot() for k in ("EQ", "TP", "SV"))
        ref = f"{RDF}resource"
        kv = {
            e.get(f"{RDF}ID"): float(e.findtext(f"{CIM}BaseVoltage.nominalVoltage"))
            for e in eq.iter(f"{CIM}BaseVoltage")
        }
        self.node_kv = {
            n.get(f"{RDF}ID"): kv[n.find(f"{CIM}TopologicalNode.BaseVoltage").get(ref)[1:]]
            for n in tp.iter(f"{CIM}TopologicalNode")
        }
        node_of_terminal = {
            t.get(f"{RDF}about")[1:]: t.find(f"{CIM}Terminal.TopologicalNode").get(ref)[1:]
            for t in tp.iter(f"{CIM}Terminal")
        }
        terminals_of = defaultdict(list)
        for t in eq.iter(f"{CIM}Terminal"):
            equipment = t.find(f"{CIM}Terminal.ConductingEquipment").get(ref)[1:]
            terminals_of[equipment].append(t.get(f"{RDF}ID"))
        sv_kv = {
            v.find(f"{CIM}SvVoltage.TopologicalNode").get(ref)[1:]: float(
                v.findtext(f"{CIM}SvVoltage.v")
            )
            for v in sv.iter(f"{CIM}SvVoltage")
        }
        self.sv_pu = {node: v / self.node_kv[node] for node, v in sv_kv.items()}
        consumers = {e.get(f"{RDF}ID") for e in eq.iter(f"{CIM}EnergyConsumer")}
        load_terminals = {t: c for c in consumers for t in terminals_of[c]}
        self.load_w: dict[str, float] = defaultdict(float)
        self.load_count = 0
        for flow in sv.iter(f"{CIM}SvPowerFlow"):
            terminal = flow.find(f"{CIM}SvPowerFlow.Terminal").get(ref)[1:]
            if terminal in load_terminals:
                self.load_count += 1
                node = node_of_terminal[terminal]
                self.load_w[node] += float(flow.findtext(f"{CIM}SvPowerFlow.p")) * 1e6
        (injection,) = (e.get(f"{RDF}ID") for e in eq.iter(f"{CIM}ExternalNetworkInjection"))
        self.slack_node = node_of_terminal[terminals_of[injection][0]]
        self.lines = {e.get(f"{RDF}ID") for e in eq.iter(f"{CIM}ACLineSegment")}
        self.transformers = {e.get(f"{RDF}ID") for e in eq.iter(f"{CIM}PowerTransformer")}


@pytest.fixture(scope="module")
def sample(cigre_dir: Path) -> Sample:
    return Sample(cigre_dir)


@pytest.fixture(scope="module")
def cigre_net() -> pp.pandapowerNet:
    """CIGRE MV with all DER (13 sgens, 2 storage units); runpp only adds result tables."""
    return pn.create_cigre_network_mv(with_der="all")


@pytest.fixture(scope="module")
def kerber_net() -> pp.pandapowerNet:
    """Kerber Vorstadtnetz Kabel 2 with a 10 kW PV unit at each of its 144 loads."""
    net = pn.create_kerber_vorstadtnetz_kabel_2()
    pp.create_sgens(net, net.load["bus"].to_numpy(), p_mw=0.01)
    return net


def write_json(net: pp.pandapowerNet, directory: Path) -> Path:
    path = directory / "net.json"
    pp.to_json(net, str(path))
    return path


@pytest.fixture(scope="module")
def cigre_json(cigre_net: pp.pandapowerNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_json(cigre_net, tmp_path_factory.mktemp("cigre"))


@pytest.fixture(scope="module")
def cigre_pp(cigre_json: Path) -> GridModel:
    return load_pandapower_json(cigre_json, zone="cigre-mv")


@pytest.fixture(scope="module")
def kerber_json(kerber_net: pp.pandapowerNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_json(kerber_net, tmp_path_factory.mktemp("kerber"))


@pytest.fixture(scope="module")
def kerber_pp(kerber_json: Path) -> GridModel:
    return load_pandapower_json(kerber_json, zone="kerber-lv")


# --- CGMES ----------------------------------------------------------------------------------


def test_cgmes_cigre_mv_has_the_samples_elements(cigre_cgmes: GridModel, sample: Sample) -> None:
    """15 TopologicalNodes, 12 ACLineSegments, 2 PowerTransformers, 18 EnergyConsumers."""
    model = cigre_cgmes
    assert len(model.nodes) == 15
    assert {n.name: n.u_rated_v for n in model.nodes} == {
        node: kv * 1e3 for node, kv in sample.node_kv.items()
    }
    lines = [b for b in model.branches if b.kind == "line"]
    transformers = [b for b in model.branches if b.kind == "transformer"]
    assert {b.name for b in lines} == sample.lines and len(lines) == 12
    assert {b.name for b in transformers} == sample.transformers and len(transformers) == 2
    # the 18 loads' SvPowerFlow (no SSH in this export) is the model's base consumption
    assert sample.load_count == 18
    expected = np.array([sample.load_w.get(n.name, 0.0) for n in model.nodes])
    np.testing.assert_allclose(model.base_p_w, expected, rtol=1e-12)
    assert model.base_p_w.sum() == pytest.approx(sum(sample.load_w.values()))


def test_cgmes_ratings_take_the_patl_current_limit_and_rated_s(cigre_cgmes: GridModel) -> None:
    """L12-13's limit set holds Normal (PATL, 320 A), Emergency (TATL 60 s), ShortTerm 0."""
    assert cigre_cgmes.branch("L12-13").rating == 320.0
    assert cigre_cgmes.branch("L13-14").rating == 410.0
    transformer = cigre_cgmes.branch("TR1")
    assert transformer.rating == 40e6  # ratedS 40 MVA
    assert cigre_cgmes.nodes[transformer.from_node].u_rated_v == 110e3  # HV side first


def test_cgmes_power_flow_reproduces_every_sv_voltage(
    cigre_cgmes: GridModel, sample: Sample
) -> None:
    """An AC power flow of the model's operating point agrees with NEPLAN's SvVoltage."""
    solution = AcSolver(cigre_cgmes).solve(cigre_cgmes.base_p_w[None], cigre_cgmes.base_q_var[None])
    assert solution.converged.tolist() == [True]
    computed = {n.name: solution.u_pu[0, n.index] for n in cigre_cgmes.nodes}
    assert computed.keys() == sample.sv_pu.keys()
    for node, u_pu in sample.sv_pu.items():
        assert computed[node] == pytest.approx(u_pu, abs=1e-3), node
    # measured 2e-8: the mapping reproduces NEPLAN's result, not merely within the tolerance
    assert max(abs(computed[n] - u) for n, u in sample.sv_pu.items()) < 1e-6
    # the interface imports the loads plus the losses
    assert solution.interface_p_w[0] > cigre_cgmes.base_p_w.sum()


def test_cgmes_header_gives_time_and_version_and_the_slack(
    cigre_cgmes: GridModel, sample: Sample
) -> None:
    """IEC 61970-552: the SV header's Model.scenarioTime is the operating point's time."""
    assert cigre_cgmes.created == datetime(2018, 5, 24, 13, 1, 39, tzinfo=UTC)
    assert re.fullmatch(r"[0-9a-f]{16}", cigre_cgmes.version)
    assert cigre_cgmes.nodes[cigre_cgmes.slack].name == sample.slack_node


# --- pandapower -----------------------------------------------------------------------------


@pytest.mark.parametrize("grid", ["cigre", "kerber"])
def test_pandapower_json_round_trip_agrees_with_runpp(
    grid: str, request: pytest.FixtureRequest
) -> None:
    """Voltages within 1e-4 pu, loadings within 1e-3, interface power as the ext_grid's."""
    net = request.getfixturevalue(f"{grid}_net")
    path = request.getfixturevalue(f"{grid}_json")
    model = request.getfixturevalue(f"{grid}_pp")
    assert model.version == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert model.created == datetime.fromtimestamp(path.stat().st_mtime, UTC)

    # loading as S/S_rated for transformers, as the model defines it
    pp.runpp(net, trafo_loading="power", numba=False)
    solution = AcSolver(model).solve(model.base_p_w[None], model.base_q_var[None])
    assert solution.converged.tolist() == [True]
    for bus, row in net.bus.iterrows():
        node = model.node(row["name"] if row["name"] else f"bus {bus}")
        assert solution.u_pu[0, node.index] == pytest.approx(net.res_bus.at[bus, "vm_pu"], abs=1e-4)
    for table in ("line", "trafo"):
        for idx, row in net[table].iterrows():
            branch = model.branch(row["name"])
            expected = net[f"res_{table}"].at[idx, "loading_percent"] / 100
            assert solution.loading[0, branch.index] == pytest.approx(expected, abs=1e-3)
    assert solution.interface_p_w[0] == pytest.approx(
        net.res_ext_grid["p_mw"].sum() * 1e6, rel=1e-5
    )
    assert model.nodes[model.slack].name == net.bus.at[net.ext_grid.at[0, "bus"], "name"]


def test_pandapower_storage_is_load_and_sgen_is_negative_load(
    cigre_pp: GridModel, cigre_net: pp.pandapowerNet
) -> None:
    net = cigre_net
    expected = defaultdict(float)
    for table, sign in (("load", 1), ("storage", 1), ("sgen", -1)):
        for row in net[table].itertuples():
            expected[net.bus.at[row.bus, "name"]] += sign * row.p_mw * row.scaling * 1e6
    assert {n.name: cigre_pp.base_p_w[n.index] for n in cigre_pp.nodes} == pytest.approx(
        {n.name: expected[n.name] for n in cigre_pp.nodes}
    )
    assert [b.name for b in cigre_pp.branches] == [*net.line["name"], *net.trafo["name"]]
    assert from_pandapower(net, zone="z", version="v7").version == "v7"
    assert cigre_pp.branch("Line 1-2").rating == pytest.approx(net.line.at[0, "max_i_ka"] * 1e3)


# --- the solver -----------------------------------------------------------------------------


def assert_same_flows(got: Solution, want: Solution, atol: float = 1e-12) -> None:
    assert got.converged.tolist() == want.converged.tolist()
    np.testing.assert_allclose(got.u_pu, want.u_pu, rtol=0, atol=atol)
    np.testing.assert_allclose(got.loading, want.loading, rtol=0, atol=atol)
    np.testing.assert_allclose(got.interface_p_w, want.interface_p_w, rtol=1e-12)


@pytest.mark.parametrize("model_name", ["cigre_pp", "kerber_pp"])
def test_direct_single_solves_batches_and_the_public_api_agree(
    model_name: str, request: pytest.FixtureRequest
) -> None:
    """Up to DIRECT_MAX_SCENARIOS go one by one through PGM's core, more in one PGM batch;
    both give what PGM's public API gives, scenario by scenario."""
    model: GridModel = request.getfixturevalue(model_name)
    solver, public = AcSolver(model), AcSolver(model, direct=False)
    assert solver.direct and not public.direct  # the installed PGM has the core calls
    rng = np.random.default_rng(0)
    count = DIRECT_MAX_SCENARIOS + 4
    scale = rng.uniform(0.0, 1.5, size=(count, len(model.nodes)))
    p, q = model.base_p_w * scale, model.base_q_var * scale
    batch = solver.solve(p, q)  # more than DIRECT_MAX_SCENARIOS: one PGM batch
    assert batch.converged.all()
    direct = solver.solve(p[:DIRECT_MAX_SCENARIOS], q[:DIRECT_MAX_SCENARIOS])
    assert_same_flows(direct, _rows(batch, slice(0, DIRECT_MAX_SCENARIOS)))
    for s in range(count):
        assert_same_flows(solver.solve(p[s : s + 1], q[s : s + 1]), _rows(batch, slice(s, s + 1)))
        assert_same_flows(public.solve(p[s : s + 1], q[s : s + 1]), _rows(batch, slice(s, s + 1)))
    # scenarios differ: nothing solved one point many times
    assert np.ptp(batch.interface_p_w) > 1e4


def _rows(sol: Solution, rows: slice) -> Solution:
    return Solution(sol.u_pu[rows], sol.loading[rows], sol.interface_p_w[rows], sol.converged[rows])


def test_core_calls_that_disagree_with_the_public_api_are_not_used(
    cigre_pp: GridModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The core calls are checked on the model's base point before they are trusted."""
    real = _DirectCalls.solve

    def off_by_1e4_pu(self: _DirectCalls, p: np.ndarray, q: np.ndarray) -> Solution:
        sol = real(self, p, q)
        return Solution(sol.u_pu + 1e-4, sol.loading, sol.interface_p_w, sol.converged)

    monkeypatch.setattr(_DirectCalls, "solve", off_by_1e4_pu)
    solver = AcSolver(cigre_pp)
    assert not solver.direct
    assert "otherwise than its public API" in caplog.text
    want = AcSolver(cigre_pp, direct=False).solve(
        cigre_pp.base_p_w[None], cigre_pp.base_q_var[None]
    )
    assert_same_flows(solver.solve(cigre_pp.base_p_w[None], cigre_pp.base_q_var[None]), want)


@pytest.mark.parametrize("count", [3, DIRECT_MAX_SCENARIOS + 1])
@pytest.mark.parametrize("direct", [True, False])
def test_an_absurd_scenario_fails_alone(cigre_pp: GridModel, count: int, direct: bool) -> None:
    solver = AcSolver(cigre_pp, direct=direct)
    p = np.tile(cigre_pp.base_p_w, (count, 1))
    q = np.tile(cigre_pp.base_q_var, (count, 1))
    p[1, cigre_pp.node("Bus 11").index] = 1e12  # 1 TW in an MV feeder
    solution = solver.solve(p, q)
    assert solution.converged.tolist() == [True, False] + [True] * (count - 2)
    assert np.isnan(solution.u_pu[1]).all() and np.isnan(solution.loading[1]).all()
    assert np.isnan(solution.interface_p_w[1])
    base = solver.solve(p[:1], q[:1])
    for s in (0, 2):
        np.testing.assert_allclose(solution.u_pu[s], base.u_pu[0], atol=1e-12)
    # alone (a single scenario updates the model in place), and nothing left behind
    alone = solver.solve(p[1:2], q[1:2])
    assert alone.converged.tolist() == [False] and np.isnan(alone.u_pu).all()
    np.testing.assert_array_equal(solver.solve(p[:1], q[:1]).u_pu, base.u_pu)


def test_solver_refuses_nan_and_wrong_shapes(cigre_pp: GridModel) -> None:
    """PGM would read NaN as "keep the model's value" and solve the wrong point."""
    solver = AcSolver(cigre_pp)
    p = cigre_pp.base_p_w[None].copy()
    q = cigre_pp.base_q_var[None]
    p[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        solver.solve(p, q)
    with pytest.raises(ValueError, match=r"shape \(S, 15\)"):
        solver.solve(cigre_pp.base_p_w, cigre_pp.base_q_var)


def test_unknown_names_raise_key_errors_naming_the_zone(cigre_pp: GridModel) -> None:
    with pytest.raises(KeyError, match="zone cigre-mv: no node 'Bus 99'"):
        cigre_pp.node("Bus 99")
    with pytest.raises(KeyError, match="zone cigre-mv: no line or transformer 'L1'"):
        cigre_pp.branch("L1")


# --- errors ---------------------------------------------------------------------------------


def copy_sample(cigre_dir: Path, to: Path, *, without: str = "DI") -> list[Path]:
    paths = []
    for path in cigre_dir.glob("*.xml"):
        if not path.stem.endswith(without):
            paths.append(Path(shutil.copy(path, to / path.name)))
    return paths


def test_a_missing_tp_profile_is_refused(cigre_dir: Path, tmp_path: Path) -> None:
    """A grid model needs EQ, TP and SSH or SV."""
    paths = copy_sample(cigre_dir, tmp_path, without="TP")
    with pytest.raises(GridModelError, match=r"the TP \(Topology\) profile is missing") as e:
        load_cgmes(paths, zone="z")
    assert "Rootnet_FULL_NE_24J13h_EQ.xml" in str(e.value)


def test_garbage_xml_is_refused_naming_the_file(cigre_dir: Path, tmp_path: Path) -> None:
    paths = copy_sample(cigre_dir, tmp_path)
    tp = next(p for p in paths if p.stem.endswith("TP"))
    tp.write_bytes(tp.read_bytes()[:5000])  # truncated mid-element
    with pytest.raises(GridModelError, match=r"_TP\.xml: .*XML rule xml_malformed"):
        load_cgmes(paths, zone="z")


def test_a_dtd_is_refused_before_cimpy_sees_the_file(cigre_dir: Path, tmp_path: Path) -> None:
    """xmlsafe: no DOCTYPE, so no entity expansion and no external entity."""
    paths = copy_sample(cigre_dir, tmp_path)
    eq = next(p for p in paths if p.stem.endswith("EQ"))
    text = eq.read_text(encoding="utf-8")
    doctype = '<!DOCTYPE rdf:RDF [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    eq.write_text(text.replace("?>\n", "?>\n" + doctype, 1), encoding="utf-8")
    with pytest.raises(GridModelError, match=r"_EQ\.xml: .*XML rule dtd_forbidden"):
        load_cgmes(paths, zone="z")


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GridModelError, match=r"missing_EQ\.xml: CGMES file cannot be read"):
        load_cgmes([tmp_path / "missing_EQ.xml"], zone="z")
    with pytest.raises(GridModelError, match=r"net\.json: pandapower JSON cannot be read"):
        load_pandapower_json(tmp_path / "net.json", zone="z")


def test_cgmes_3_is_refused_naming_what_is_supported(cigre_dir: Path, tmp_path: Path) -> None:
    paths = copy_sample(cigre_dir, tmp_path)
    for path in paths:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("2012/CIM-schema-cim16#", "CIM100#"), encoding="utf-8")
    with pytest.raises(GridModelError, match=r"CGMES 3\.0 .*supported: CGMES 2\.4\.15"):
        load_cgmes(paths, zone="z")


def test_a_model_without_slack_is_refused(cigre_net: pp.pandapowerNet) -> None:
    net = copy.deepcopy(cigre_net)
    net.ext_grid.drop(net.ext_grid.index, inplace=True)
    with pytest.raises(GridModelError, match=r"no_slack\.json: .*exactly one in-service ext_grid"):
        from_pandapower(net, zone="z", source="no_slack.json")


def test_cgmes_without_an_external_network_injection_is_refused(
    cigre_dir: Path, tmp_path: Path
) -> None:
    paths = copy_sample(cigre_dir, tmp_path)
    eq = next(p for p in paths if p.stem.endswith("EQ"))
    text = eq.read_text(encoding="utf-8")
    text = re.sub(
        r"<cim:ExternalNetworkInjection .*?</cim:ExternalNetworkInjection>", "", text, flags=re.S
    )
    eq.write_text(text, encoding="utf-8")
    with pytest.raises(GridModelError, match="exactly one connected ExternalNetworkInjection"):
        load_cgmes(paths, zone="z")


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GridModelError, match="unknown model format 'uct'"):
        load_model(tmp_path, zone="z", format="uct")


RATIO_TAP_CHANGER = """
  <cim:RatioTapChanger rdf:ID="_test-rtc">
    <cim:IdentifiedObject.name>TR1 tap</cim:IdentifiedObject.name>
    <cim:TapChanger.neutralStep>0</cim:TapChanger.neutralStep>
    <cim:TapChanger.lowStep>-10</cim:TapChanger.lowStep>
    <cim:TapChanger.highStep>10</cim:TapChanger.highStep>
    <cim:TapChanger.normalStep>2</cim:TapChanger.normalStep>
    <cim:RatioTapChanger.stepVoltageIncrement>1.5</cim:RatioTapChanger.stepVoltageIncrement>
    <cim:RatioTapChanger.TransformerEnd rdf:resource="#{end}"/>
  </cim:RatioTapChanger>
"""


def test_a_ratio_tap_on_the_hv_winding_lowers_the_mv_voltage(
    cigre_dir: Path, cigre_cgmes: GridModel, tmp_path: Path
) -> None:
    """IEC 61970-452 RatioTapChanger: step 2 of +1.5 % on TR1's 110 kV end (normalStep, no
    SSH) raises the ratio by 3 %, so TR1's MV side sits ~3 % lower; TR2's feeder does not move.
    """
    paths = copy_sample(cigre_dir, tmp_path)
    eq = next(p for p in paths if p.stem.endswith("EQ"))
    text = eq.read_text(encoding="utf-8")
    end = "_c59c2fea-3ad9-4cdf-bbc9-aad9e88d1b8a"  # TR1, endNumber 1, ratedU 110 kV
    assert f'<cim:PowerTransformerEnd rdf:ID="{end}">' in text
    eq.write_text(
        text.replace("</rdf:RDF>", RATIO_TAP_CHANGER.format(end=end) + "</rdf:RDF>"),
        encoding="utf-8",
    )
    tapped = load_cgmes(paths, zone="z")
    before = AcSolver(cigre_cgmes).solve(cigre_cgmes.base_p_w[None], cigre_cgmes.base_q_var[None])
    after = AcSolver(tapped).solve(tapped.base_p_w[None], tapped.base_q_var[None])
    mv_tr1 = cigre_cgmes.node("N1").index
    mv_tr2 = cigre_cgmes.node("N12").index
    assert after.u_pu[0, mv_tr1] == pytest.approx(before.u_pu[0, mv_tr1] / 1.03, abs=2e-3)
    assert after.u_pu[0, mv_tr2] == pytest.approx(before.u_pu[0, mv_tr2], abs=1e-6)


def test_a_json_file_that_is_no_pandapower_net_is_refused_naming_the_rule(
    tmp_path: Path,
) -> None:
    path = tmp_path / "grid.json"
    path.write_text('{"not": "a pandapower net"}')
    with pytest.raises(GridModelError, match="not a pandapower JSON network"):
        load_pandapower_json(path, zone="z")
