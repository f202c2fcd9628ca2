"""The power-flow grid check's service and the operators' API, end to end.

A real gridgate on pandapower's CIGRE MV grid at 60 % load (zone "mv", the DSO's), with the
real Mosquitto, both databases, and HTTPS with TLS client certificates made by trustme: the
traffic lights arrive retained on MQTT and turn when an accepted UFTP order eats the
headroom; the DSO sets a temporary limit the check then enforces, on record with its audit
entry so that a restarted gridgate enforces it again; a new forecast that makes an accepted
order unsafe is audited and reported to the DSO's control centre.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pandapower
import pandapower.networks
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from adapters.uftp.peer import UftpPeer
from gateway.app import Gateway
from gateway.config import settings_from_dict
from gateway.gridcheck.base import Decision
from gateway.gridcheck.powerflow import PowerFlowCheck
from gateway.gridcheck.service import GridService, traffic_light_topic
from gateway.model import DPrognosis, Envelope, FlexOrder, PowerIsp, Role
from gateway.operator_api import ApiRule
from gateway.store.db import sessionmaker
from gateway.store.models import AuditEntry, TemporaryLimitRecord
from tests.adapters.mqtt.conftest import MOSQUITTO_HOST, MOSQUITTO_PORT, mosquitto_running
from tests.conftest import require
from tests.gateway.conftest import public_b64, secret_b64
from tests.gateway.test_cim_activation import client_tls

GRIDGATE = "gridgate.example.com"
DSO = "dso.example.com"
AGR = "agr.example.com"
TZ = "Europe/Amsterdam"
CP4, CP5, CP13 = (f"ean.8716859000{bus:08d}" for bus in (4, 5, 13))


@dataclass
class GridWorld:
    gateway: Gateway
    service: GridService
    url: str
    ca: trustme.CA
    tls: dict[str, ssl.SSLContext]  # per participant id
    prefixes: dict[str, str]  # per participant id
    dso: UftpPeer
    agr: UftpPeer

    @property
    def check(self) -> PowerFlowCheck:
        assert isinstance(self.gateway.grid_check, PowerFlowCheck)
        return self.gateway.grid_check


@pytest.fixture
async def grid(tmp_path: Path, database_url: str) -> AsyncIterator[GridWorld]:
    require(mosquitto_running(), f"Mosquitto is not listening on {MOSQUITTO_HOST}:{MOSQUITTO_PORT}")
    pandapower.to_json(
        pandapower.networks.create_cigre_network_mv(with_der="all"), str(tmp_path / "mv.json")
    )
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls, fingerprints = {}, {}
    for who in ("dso", "agr", "agr2", "iso"):
        tls[who], fingerprints[who] = client_tls(ca, f"{who}.example.com")
    keys = {n: Ed25519PrivateKey.generate() for n in ("gridgate", "dso", "agr")}
    (tmp_path / "gw.key").write_text(secret_b64(keys["gridgate"]))
    gw_public = keys["gridgate"].public_key()
    dso = UftpPeer(DSO, Role.DSO, keys["dso"], {GRIDGATE: gw_public, AGR: keys["agr"].public_key()})
    agr = UftpPeer(AGR, Role.AGR, keys["agr"], {GRIDGATE: gw_public, DSO: keys["dso"].public_key()})
    await dso.start()
    await agr.start()
    run = uuid.uuid4().hex[:10]
    prefixes = {who: f"test/gridgate/{run}/{who}" for who in ("dso", "agr", "agr2")}

    def resource(rid: str, cp: str, number: int) -> dict[str, Any]:
        return {
            "id": rid,
            "connection_ean": f"ean.871685900000000{number:03d}",
            "congestion_point": cp,
            "min_w": -5_000_000,
            "max_w": 5_000_000,
        }

    settings = settings_from_dict(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "database_url": database_url,
                "uftp_domain": GRIDGATE,
                "signing_key_file": "gw.key",
                "tls": {
                    "certificate": "server.pem",
                    "key": "server.pem",
                    "client_ca": "ca.pem",
                    "require_client_certificate": False,
                },
            },
            "mqtt": {
                "url": f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}",
                "client_id": f"gridgate-{run}",
            },
            "market": {"time_zone": TZ},
            "outbox": {"retry_base_seconds": 0.1, "retry_max_seconds": 1.0},
            "gridcheck": {
                "method": "powerflow",
                "zones": [
                    {
                        "id": "mv",
                        "dso": "dso",
                        "model": "mv.json",
                        "format": "pandapower",
                        "load_profile": [0.6],
                        "v_min": 0.90,
                    }
                ],
                "service": {"poll_seconds": 0.1, "debounce_seconds": 0.05},
            },
            "participants": [
                {"id": "iso", "role": "ISO", "client_certificate_sha256": fingerprints["iso"]},
                {
                    "id": "dso",
                    "role": "DSO",
                    "uftp_domain": DSO,
                    "endpoint": dso.url,
                    "public_keys": [public_b64(keys["dso"])],
                    "mqtt_prefix": prefixes["dso"],
                    "client_certificate_sha256": fingerprints["dso"],
                    "congestion_points": [
                        {"ean": cp, "limit_w": 100_000, "zone": "mv", "grid_node": f"Bus {bus}"}
                        for cp, bus in ((CP4, 4), (CP5, 5), (CP13, 13))
                    ],
                },
                {
                    "id": "agr",
                    "role": "AGR",
                    "uftp_domain": AGR,
                    "endpoint": agr.url,
                    "public_keys": [public_b64(keys["agr"])],
                    "mqtt_prefix": prefixes["agr"],
                    "client_certificate_sha256": fingerprints["agr"],
                    "resources": [resource("bat-4", CP4, 4), resource("bat-5", CP5, 5)],
                },
                {
                    "id": "agr2",
                    "role": "AGR",
                    "mqtt_prefix": prefixes["agr2"],
                    "client_certificate_sha256": fingerprints["agr2"],
                    "resources": [resource("pv-13", CP13, 13)],
                },
            ],
        },
        path=tmp_path / "t.toml",
        base=tmp_path,
    )
    gateway = Gateway(settings)
    await gateway.start()
    assert gateway.grid_service is not None
    url = f"https://127.0.0.1:{gateway.port}"
    peer_tls = ssl.create_default_context()
    ca.configure_trust(peer_tls)
    for peer in (dso, agr):
        assert peer._session is not None
        await peer._session.close()
        peer._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=peer_tls))
        peer.gateway_url = f"{url}/shapeshifter/api/v3/message"
    world = GridWorld(gateway, gateway.grid_service, url, ca, tls, prefixes, dso, agr)
    try:
        yield world
    finally:
        await world.gateway.stop()  # the one running (a test may have restarted it)
        await dso.stop()
        await agr.stop()
        await clear_retained(prefixes.values())


async def clear_retained(prefixes: Any) -> None:
    """Leave nothing retained on the shared broker: an empty retained message clears it."""
    async with aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT) as client:
        for prefix in prefixes:
            for cp in (CP4, CP5, CP13):
                await client.publish(traffic_light_topic(prefix, cp), b"", qos=1, retain=True)


# -- helpers ------------------------------------------------------------------------------


def now_isp(world: GridWorld) -> tuple[date, int]:
    return world.service.current_isp()


async def published(world: GridWorld, topic: str, timeout: float = 20) -> None:
    """Wait until the service has published on `topic`."""
    async with asyncio.timeout(timeout):
        while topic not in world.service.published:
            await asyncio.sleep(0.05)


async def next_message(
    client: aiomqtt.Client,
    accept: Callable[[aiomqtt.Message], bool] = lambda _: True,
    timeout: float = 20,
) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            if accept(message):
                return message
    raise AssertionError("the subscription ended")


async def topics_within(client: aiomqtt.Client, seconds: float) -> list[str]:
    """The topics of what arrives in the next `seconds`."""
    seen = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                seen.append(message.topic.value)
    return seen


def body_of(message: aiomqtt.Message) -> dict[str, Any]:
    assert isinstance(message.payload, bytes)
    return dict(json.loads(message.payload))


def subscriber() -> aiomqtt.Client:
    return aiomqtt.Client(MOSQUITTO_HOST, MOSQUITTO_PORT, identifier=f"cc-{uuid.uuid4().hex[:10]}")


async def call(
    world: GridWorld,
    method: str,
    path: str,
    who: str | None,
    *,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """An HTTPS request as participant `who` (its client certificate), or with none."""
    if who is None:
        tls = ssl.create_default_context()
        world.ca.configure_trust(tls)
    else:
        tls = world.tls[who]
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{world.url}{path}", data=data, ssl=tls) as response,
    ):
        return response.status, await response.json(content_type=None)


def dso_order(period: date, isp: int, watts: int, cp: str = CP5, *, count: int = 1) -> FlexOrder:
    return FlexOrder(
        envelope=Envelope(
            message_id=str(uuid.uuid4()),
            conversation_id=str(uuid.uuid4()),
            sender_domain=DSO,
            recipient_domain=AGR,
            sender_role=Role.DSO,
            timestamp=datetime.now(UTC),
        ),
        isp_duration=timedelta(minutes=15),
        time_zone=TZ,
        period=period,
        congestion_point=cp,
        isps=(PowerIsp(isp, watts, count),),
        price=Decimal("30.00"),
        currency="EUR",
        order_reference="congestion-1",
        unsolicited=True,
    )


async def audit_entries(world: GridWorld, event: str) -> list[tuple[str, dict[str, Any]]]:
    """(actor, detail) of every audit entry of `event`, oldest first."""
    async with sessionmaker(world.gateway.engine)() as session:
        rows = await session.execute(
            select(AuditEntry.actor, AuditEntry.detail)
            .where(AuditEntry.event == event)
            .order_by(AuditEntry.seq)
        )
        return [(actor, json.loads(detail)) for actor, detail in rows]


async def audited(
    world: GridWorld,
    event: str,
    accept: Callable[[dict[str, Any]], bool] = lambda _: True,
    timeout: float = 20,
) -> tuple[str, dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            for actor, detail in await audit_entries(world, event):
                if accept(detail):
                    return actor, detail
            await asyncio.sleep(0.1)


# -- traffic lights on MQTT ---------------------------------------------------------------


async def test_a_retained_traffic_light_reaches_a_subscriber_that_connects_after_it(
    grid: GridWorld,
) -> None:
    period, isp = now_isp(grid)
    topic = traffic_light_topic(grid.prefixes["agr"], CP5)
    await published(grid, topic)
    async with subscriber() as client:
        await client.subscribe(f"{grid.prefixes['agr']}/grid/#", qos=1)
        message = await next_message(client, lambda m: m.topic.value == topic)
        # MQTT 3.1.1 §3.3.1.3: sent because of a new subscription, so flagged retained
        assert message.retain is True and message.qos == 1
        light = body_of(message)
        assert (light["congestion_point"], light["zone"]) == (CP5, "mv")
        assert (light["period"], light["isp"]) == (period.isoformat(), isp)
        assert light["colour"] == "green" and light["headroom"] > 0.1
        assert light["model_version"] and light["published_at"] and light["isp_start"]
        assert set(light["binding"]) == {"id", "type", "metric", "predicted", "limit"}
        assert light["reason"].startswith("headroom")
        later = light["later"]
        assert [x["isp"] for x in later] == list(range(isp + 1, isp + 1 + len(later)))
        assert all(x["colour"] == "green" for x in later)
        # the aggregator sees the congestion points of its resources only
        others = await topics_within(client, 0.5)
        assert traffic_light_topic(grid.prefixes["agr"], CP13) not in others
    # the DSO gets every congestion point it owns, the other aggregator its own
    await published(grid, traffic_light_topic(grid.prefixes["dso"], CP13))
    await published(grid, traffic_light_topic(grid.prefixes["agr2"], CP13))
    assert traffic_light_topic(grid.prefixes["agr2"], CP5) not in grid.service.published


async def test_the_light_turns_when_an_accepted_order_eats_the_headroom(grid: GridWorld) -> None:
    period, isp = now_isp(grid)
    topic = traffic_light_topic(grid.prefixes["agr"], CP5)
    await published(grid, topic)
    async with subscriber() as client:
        await client.subscribe(topic, qos=1)
        assert body_of(await next_message(client))["colour"] == "green"
        # the DSO orders 2.5 MW more consumption at Bus 5 through gridgate in this ISP and
        # the next (should the ISP end meanwhile): accepted, and feeder 1's Line 2-3 is
        # left with little headroom
        count = 2 if isp < grid.service.isp_count(period) else 1
        order = dso_order(period, isp, 2_500_000, count=count)
        assert await grid.dso.send(order) == (200, "")
        turned = await next_message(client, lambda m: not m.retain and "yellow" in colours(m))
    assert grid.check.accepted_power(CP5, period, isp) == 2_500_000
    body = body_of(turned)
    light = body if body["colour"] == "yellow" else body["later"][0]
    assert light["isp"] in (isp, isp + 1) and light["colour"] == "yellow"
    assert light["binding"]["id"] == "Line 2-3" and light["binding"]["type"] == "line"
    assert 0 < light["headroom"] < 0.10
    # the ISPs the order does not cover stay green
    assert {x["colour"] for x in body["later"] if x["isp"] > isp + 1} <= {"green"}


def colours(message: aiomqtt.Message) -> list[str]:
    """The colours of the current ISP and the next one in a traffic-light message."""
    body = body_of(message)
    return [body["colour"], *(x["colour"] for x in body["later"][:1])]


# -- the operator API ---------------------------------------------------------------------


async def test_every_operator_endpoint_authenticates_and_authorizes(grid: GridWorld) -> None:
    for method, path in (
        ("GET", "/grid/v1/traffic-lights"),
        ("GET", "/grid/v1/temporary-limits"),
        ("POST", "/grid/v1/temporary-limits"),
        ("DELETE", "/grid/v1/temporary-limits/x"),
        ("GET", "/grid/v1/revalidation"),
    ):
        status, answer = await call(grid, method, path, None)
        assert status == 401, path
        assert answer["rule"] == ApiRule.CLIENT_CERTIFICATE.value
    start = datetime.now(UTC)
    limit = {
        "zone": "mv",
        "interface_limit_w": 1_000_000,
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
    }
    # SO GL Art. 182(4): the DSO sets them; an aggregator or the ISO does not
    for who in ("agr", "iso"):
        status, answer = await call(grid, "POST", "/grid/v1/temporary-limits", who, body=limit)
        assert (status, answer["rule"]) == (403, ApiRule.ART_182.value)
    status, answer = await call(grid, "GET", "/grid/v1/revalidation", "agr")
    assert (status, answer["rule"]) == (403, ApiRule.ROLE.value)
    # what each one sees of the lights
    seen = {}
    for who in ("dso", "agr", "agr2", "iso"):
        status, answer = await call(grid, "GET", "/grid/v1/traffic-lights", who)
        assert status == 200 and answer["isp"] == now_isp(grid)[1]
        seen[who] = sorted(light["congestion_point"] for light in answer["lights"])
    assert seen == {
        "dso": sorted([CP4, CP5, CP13]),
        "agr": sorted([CP4, CP5]),
        "agr2": [CP13],
        "iso": sorted([CP4, CP5, CP13]),
    }
    status, answer = await call(grid, "GET", "/grid/v1/traffic-lights?period=2026-13-01", "iso")
    assert (status, answer["rule"]) == (400, ApiRule.PERIOD.value)
    status, answer = await call(grid, "GET", "/grid/v1/traffic-lights?isp=0", "iso")
    assert (status, answer["rule"]) == (400, ApiRule.ISP.value)


async def test_a_temporary_limit_request_that_breaks_a_rule_is_refused_naming_it(
    grid: GridWorld,
) -> None:
    start = datetime.now(UTC)
    valid: dict[str, Any] = {
        "zone": "mv",
        "interface_limit_w": 1_000_000,
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
    }
    cases: list[tuple[bytes, int, ApiRule]] = [
        (b"{not json", 400, ApiRule.BAD_JSON),
        (b"[1, 2]", 400, ApiRule.BAD_JSON),
        (b'{"zone": "mv"}', 400, ApiRule.FIELDS),
        (json.dumps({**valid, "colour": "red"}).encode(), 400, ApiRule.FIELDS),
        (json.dumps({**valid, "zone": "lv"}).encode(), 404, ApiRule.UNKNOWN_ZONE),
        (json.dumps({**valid, "interface_limit_w": -5}).encode(), 400, ApiRule.LIMIT_VALUE),
        (json.dumps({**valid, "interface_limit_w": True}).encode(), 400, ApiRule.LIMIT_VALUE),
        (json.dumps({**valid, "start": "tomorrow"}).encode(), 400, ApiRule.TIME),
        (json.dumps({**valid, "start": "2026-11-27T10:00"}).encode(), 400, ApiRule.TIME),
        (
            json.dumps({**valid, "end": (start - timedelta(minutes=1)).isoformat()}).encode(),
            400,
            ApiRule.WINDOW,
        ),
    ]
    for body, status, rule in cases:
        answer_status, answer = await call(
            grid, "POST", "/grid/v1/temporary-limits", "dso", raw=body
        )
        assert (answer_status, answer["rule"]) == (status, rule.value), body
        assert answer["error"]
    assert await audit_entries(grid, "gridcheck.temporary_limit.set") == []


async def test_a_dsos_temporary_limit_makes_the_check_refuse_what_it_accepted_and_is_audited(
    grid: GridWorld,
) -> None:
    period, isp = now_isp(grid)
    before = grid.check.check(dso_order(period, isp, 1_000_000, CP13), origin="dso")
    assert before.accepted and before.reservation is not None
    grid.check.release(before.reservation)

    start = datetime.now(UTC) - timedelta(minutes=1)
    end = start + timedelta(hours=2)
    request = {
        "zone": "mv",
        "interface_limit_w": 1_000_000,  # far below what the zone draws: no more import
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reason": "TSO request: N-1 on the 110 kV ring",
    }
    status, limit = await call(grid, "POST", "/grid/v1/temporary-limits", "dso", body=request)
    assert status == 201 and limit["id"] and limit["set_by"] == "dso"

    after = grid.check.check(dso_order(period, isp, 1_000_000, CP13), origin="dso")
    assert not after.accepted
    assert after.binding is not None and after.binding.element_type == "interface"
    assert "temporary limit 1 MW" in after.reason

    actor, detail = await audited(grid, "gridcheck.temporary_limit.set")
    assert actor == "dso" and detail["id"] == limit["id"] and detail["role"] == "DSO"
    assert detail["interface_limit_w"] == 1_000_000 and detail["reason"] == request["reason"]
    # a base-state change: the zone was re-validated (no order held: nothing unsafe)
    _, run = await audited(grid, "gridcheck.revalidated")
    assert run["zone"] == "mv" and run["unsafe_orders"] == 0

    status, listed = await call(grid, "GET", "/grid/v1/temporary-limits", "iso")
    assert status == 200 and [t["id"] for t in listed["temporary_limits"]] == [limit["id"]]
    status, answer = await call(grid, "DELETE", f"/grid/v1/temporary-limits/{limit['id']}", "agr")
    assert (status, answer["rule"]) == (403, ApiRule.ART_182.value)
    status, _ = await call(grid, "DELETE", f"/grid/v1/temporary-limits/{limit['id']}", "dso")
    assert status == 200
    actor, detail = await audited(grid, "gridcheck.temporary_limit.cleared")
    assert actor == "dso" and detail["id"] == limit["id"]
    again = grid.check.check(dso_order(period, isp, 1_000_000, CP13), origin="dso")
    assert again.accepted
    status, listed = await call(grid, "GET", "/grid/v1/temporary-limits", "dso")
    assert listed["temporary_limits"] == []
    status, answer = await call(grid, "DELETE", f"/grid/v1/temporary-limits/{limit['id']}", "dso")
    assert (status, answer["rule"]) == (404, ApiRule.UNKNOWN_LIMIT.value)


# -- temporary limits on record -----------------------------------------------------------


async def restart(world: GridWorld) -> None:
    """Stop gridgate and start a new one on the same config and database: what the new one
    knows of temporary limits, it read back from the database."""
    settings = world.gateway.settings
    await world.gateway.stop()
    gateway = Gateway(settings)
    await gateway.start()
    assert gateway.grid_service is not None
    world.gateway, world.service = gateway, gateway.grid_service
    world.url = f"https://127.0.0.1:{gateway.port}"
    for peer in (world.dso, world.agr):
        peer.gateway_url = f"{world.url}/shapeshifter/api/v3/message"


def decide(world: GridWorld, watts: int = 1_000_000) -> Decision:
    """The check's decision on the DSO's order of `watts` more consumption at Bus 13 in the
    current ISP; nothing is kept."""
    period, isp = now_isp(world)
    decision = world.check.check(dso_order(period, isp, watts, CP13), origin="dso")
    if decision.reservation is not None:
        world.check.release(decision.reservation)
    return decision


def limit_request(start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "zone": "mv",
        "interface_limit_w": 1_000_000,  # far below what the zone draws: no more import
        "start": start.isoformat(),
        "end": end.isoformat(),
        "reason": "TSO request: N-1 on the 110 kV ring",
    }


async def limit_rows(world: GridWorld) -> dict[str, Any]:
    """The `temporary_limits` table by limit id."""
    async with world.gateway.engine.connect() as conn:
        return {row.id: row for row in await conn.execute(select(TemporaryLimitRecord))}


@contextlib.asynccontextmanager
async def audit_refused(world: GridWorld) -> AsyncIterator[None]:
    """Meanwhile the database refuses every new audit entry (a trigger): a commit that
    carries one fails as a whole."""
    engine = world.gateway.engine
    postgres = engine.dialect.name == "postgresql"
    async with engine.begin() as conn:
        if postgres:
            await conn.exec_driver_sql(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'the audit log refuses'; END $$"
            )
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
            )
        else:
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'the audit log refuses'); END"
            )
    try:
        yield
    finally:
        async with engine.begin() as conn:
            if postgres:
                await conn.exec_driver_sql("DROP TRIGGER refuse_audit ON audit_log")
                await conn.exec_driver_sql("DROP FUNCTION refuse_audit()")
            else:
                await conn.exec_driver_sql("DROP TRIGGER refuse_audit")


async def test_a_temporary_limit_set_through_the_api_binds_again_after_a_restart(
    grid: GridWorld,
) -> None:
    assert decide(grid).accepted
    start = datetime.now(UTC) - timedelta(minutes=1)
    request = limit_request(start, start + timedelta(hours=2))
    status, limit = await call(grid, "POST", "/grid/v1/temporary-limits", "dso", body=request)
    assert status == 201
    assert not decide(grid).accepted
    row = (await limit_rows(grid))[limit["id"]]
    assert (row.zone, row.interface_limit_w, row.reason) == ("mv", 1e6, request["reason"])
    assert (row.source, row.set_by, row.document_mrid, row.cleared_at) == ("api", "dso", None, None)
    assert row.starts_at == start and row.ends_at == start + timedelta(hours=2)

    await restart(grid)
    refused = decide(grid)
    assert not refused.accepted
    assert refused.binding is not None and refused.binding.element_type == "interface"
    assert "temporary limit 1 MW (TSO request: N-1 on the 110 kV ring)" in refused.reason
    # listed under its id, as it was set
    status, listed = await call(grid, "GET", "/grid/v1/temporary-limits", "iso")
    assert status == 200 and listed["temporary_limits"] == [limit]
    status, answer = await call(grid, "DELETE", f"/grid/v1/temporary-limits/{limit['id']}", "dso")
    assert (status, answer) == (200, {"cleared": limit["id"]})
    assert decide(grid).accepted
    cleared_at = (await limit_rows(grid))[limit["id"]].cleared_at
    assert cleared_at is not None
    _, detail = await audited(grid, "gridcheck.temporary_limit.cleared")
    assert detail["id"] == limit["id"]

    # cleared stays cleared
    await restart(grid)
    assert decide(grid).accepted
    assert grid.check.temporary_limit(limit["id"]) is None
    status, listed = await call(grid, "GET", "/grid/v1/temporary-limits", "dso")
    assert status == 200 and listed["temporary_limits"] == []
    status, answer = await call(grid, "DELETE", f"/grid/v1/temporary-limits/{limit['id']}", "dso")
    assert (status, answer["rule"]) == (404, ApiRule.UNKNOWN_LIMIT.value)
    assert (await limit_rows(grid))[limit["id"]].cleared_at == cleared_at


async def test_a_temporary_limit_that_has_ended_is_not_put_back_in_force(
    grid: GridWorld,
) -> None:
    now = datetime.now(UTC)
    ending = now + timedelta(seconds=2)
    status, short = await call(
        grid, "POST", "/grid/v1/temporary-limits", "dso", body=limit_request(now, ending)
    )
    assert status == 201
    status, long = await call(
        grid,
        "POST",
        "/grid/v1/temporary-limits",
        "dso",
        body=limit_request(now, now + timedelta(hours=1)),
    )
    assert status == 201
    await asyncio.sleep((ending - datetime.now(UTC)).total_seconds() + 0.1)

    await restart(grid)
    assert grid.check.temporary_limit(short["id"]) is None
    assert grid.check.temporary_limit(long["id"]) is not None
    assert set(grid.service.api_limits) == {long["id"]}
    rows = await limit_rows(grid)
    assert rows[short["id"]].cleared_at is None  # on record still: it ended, nobody cleared it
    status, answer = await call(grid, "DELETE", f"/grid/v1/temporary-limits/{short['id']}", "dso")
    assert (status, answer["rule"]) == (404, ApiRule.UNKNOWN_LIMIT.value)


async def test_a_temporary_limit_change_whose_audit_entry_is_refused_does_not_happen(
    grid: GridWorld,
) -> None:
    """Not in force unless it is on record: when the database refuses the audit entry, the
    limit's row goes with it (one transaction), the check does not apply it and the DSO
    hears 503; a clearing that cannot be recorded leaves the limit in force and on record."""
    start = datetime.now(UTC) - timedelta(minutes=1)
    request = limit_request(start, start + timedelta(hours=2))
    async with audit_refused(grid):
        status, answer = await call(grid, "POST", "/grid/v1/temporary-limits", "dso", body=request)
    assert (status, answer["rule"]) == (503, ApiRule.STORE.value)
    assert decide(grid).accepted
    assert await limit_rows(grid) == {}
    assert grid.service.api_limits == {}
    assert await audit_entries(grid, "gridcheck.temporary_limit.set") == []

    status, limit = await call(grid, "POST", "/grid/v1/temporary-limits", "dso", body=request)
    assert status == 201
    path = f"/grid/v1/temporary-limits/{limit['id']}"
    async with audit_refused(grid):
        status, answer = await call(grid, "DELETE", path, "dso")
    assert (status, answer["rule"]) == (503, ApiRule.STORE.value)
    assert not decide(grid).accepted
    assert (await limit_rows(grid))[limit["id"]].cleared_at is None
    assert await audit_entries(grid, "gridcheck.temporary_limit.cleared") == []
    # the DSO's retry goes through
    status, _ = await call(grid, "DELETE", path, "dso")
    assert status == 200 and decide(grid).accepted
    assert (await limit_rows(grid))[limit["id"]].cleared_at is not None


# -- re-validation ------------------------------------------------------------------------


async def test_a_forecast_that_makes_an_accepted_order_unsafe_is_audited_and_reported(
    grid: GridWorld,
) -> None:
    period, isp = now_isp(grid)
    order = dso_order(period, isp, 2_000_000)  # accepted: Line 2-3 still carries it
    assert await grid.dso.send(order) == (200, "")
    assert grid.check.accepted_power(CP5, period, isp) == 2_000_000
    report_topic = f"{grid.prefixes['dso']}/grid/mv/revalidation"
    async with subscriber() as client:
        await client.subscribe(report_topic, qos=1)
        # the aggregator forecasts 2 MW at Bus 4, on the same feeder (the pipeline hands
        # each D-Prognosis to the check the same way)
        grid.check.forecast(
            DPrognosis(
                envelope=Envelope(
                    str(uuid.uuid4()), str(uuid.uuid4()), AGR, DSO, Role.AGR, datetime.now(UTC)
                ),
                isp_duration=timedelta(minutes=15),
                time_zone=TZ,
                period=period,
                congestion_point=CP4,
                revision=1,
                isps=(PowerIsp(isp, 2_000_000),),
            )
        )
        report = await next_message(client)
    assert report.retain is False
    body = body_of(report)
    assert body["zone"] == "mv" and body["period"] == period.isoformat()
    (unsafe,) = body["unsafe"]
    assert (unsafe["message_id"], unsafe["origin"]) == (order.envelope.message_id, "dso")
    assert (unsafe["congestion_point"], unsafe["isp"]) == (CP5, isp)
    assert unsafe["binding"]["id"] == "Line 2-3" and unsafe["binding"]["type"] == "line"
    assert unsafe["binding"]["predicted"] > unsafe["binding"]["limit"]

    actor, run = await audited(grid, "gridcheck.revalidated", lambda d: d["unsafe_orders"] > 0)
    assert actor == "gridgate" and run["zone"] == "mv"
    (entry,) = run["unsafe"]
    assert entry["message_id"] == order.envelope.message_id and entry["origin"] == "dso"
    assert entry["binding"]["id"] == "Line 2-3" and "Line 2-3" in entry["reason"]
    assert run["reported"]["to"] == "dso"

    status, answer = await call(grid, "GET", "/grid/v1/revalidation", "dso")
    assert status == 200
    (latest,) = answer["revalidations"]
    assert latest["unsafe"][0]["message_id"] == order.envelope.message_id


async def test_a_replaced_model_file_is_swapped_in_and_re_validates_a_bad_one_is_refused(
    grid: GridWorld, tmp_path: Path
) -> None:
    """An operator replaces the model file: gridgate loads it, swaps it in whole (audited),
    and re-validates the accepted orders against it; a file that does not load leaves the
    model in place, and says why."""
    period, isp = now_isp(grid)
    order = dso_order(period, isp, 2_000_000)  # accepted on the CIGRE MV ratings
    assert await grid.dso.send(order) == (200, "")
    assert grid.check.accepted_power(CP5, period, isp) == 2_000_000
    before = grid.check.model_of("mv")
    assert before is not None
    assert await grid.service.reload_model("mv") is None  # the files did not change

    # the DSO's new export: feeder 1 re-rated, its second section now carries less
    net = pandapower.networks.create_cigre_network_mv(with_der="all")
    net.line.loc[net.line.name == "Line 2-3", "max_i_ka"] = 0.1
    pandapower.to_json(net, str(tmp_path / "mv.json"))
    version = await grid.service.reload_model("mv")
    after = grid.check.model_of("mv")
    assert version is not None and after is not None and after.version == version
    assert version != before.version
    _, loaded = await audited(grid, "gridcheck.model_loaded")
    assert loaded["zone"] == "mv" and loaded["version"] == version
    # the order accepted on the old ratings is unsafe on the new ones: named and audited
    _, run = await audited(grid, "gridcheck.revalidated", lambda d: d["unsafe_orders"] > 0)
    (entry,) = run["unsafe"]
    assert entry["message_id"] == order.envelope.message_id
    assert entry["binding"]["id"] == "Line 2-3"

    (tmp_path / "mv.json").write_text('{"not": "a pandapower net"}')
    assert await grid.service.reload_model("mv") is None
    still = grid.check.model_of("mv")
    assert still is not None and still.version == version  # the old model stays
    _, refused = await audited(grid, "gridcheck.model_refused")
    assert refused["zone"] == "mv" and refused["error"]


# -- the capacity method ------------------------------------------------------------------


async def test_with_the_capacity_check_the_api_answers_that_it_is_not_a_power_flow(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls, fingerprint = client_tls(ca, "dso.example.com")
    (tmp_path / "gw.key").write_text(secret_b64(Ed25519PrivateKey.generate()))
    settings = settings_from_dict(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gg.db'}",
                "uftp_domain": GRIDGATE,
                "signing_key_file": "gw.key",
                "tls": {"certificate": "server.pem", "key": "server.pem", "client_ca": "ca.pem"},
            },
            "mqtt": {"url": "mqtt://127.0.0.1:1"},  # never reached: nothing is published
            "participants": [
                {"id": "dso", "role": "DSO", "client_certificate_sha256": fingerprint}
            ],
        },
        path=tmp_path / "t.toml",
        base=tmp_path,
    )
    async with Gateway(settings) as gateway:
        assert gateway.grid_service is None
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"https://127.0.0.1:{gateway.port}/grid/v1/traffic-lights", ssl=tls
            ) as response,
        ):
            assert response.status == 404
            answer = await response.json()
    assert answer["rule"] == ApiRule.NOT_POWERFLOW.value and "capacity" in answer["error"]


def test_the_service_settings_are_checked_and_named(tmp_path: Path) -> None:
    from gateway.errors import ConfigError

    (tmp_path / "gw.key").write_text(secret_b64(Ed25519PrivateKey.generate()))
    data = {
        "gateway": {"uftp_domain": GRIDGATE, "signing_key_file": "gw.key"},
        "gridcheck": {"service": {"poll_seconds": 0, "debounce": 1}},
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_dict(data, path=tmp_path / "t.toml", base=tmp_path)
    message = str(caught.value)
    assert "gridcheck.service.poll_seconds: Input should be greater than 0" in message
    assert "gridcheck.service.debounce: Extra inputs are not permitted" in message
