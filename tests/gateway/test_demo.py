"""`gridgate demo` end to end: embedded defaults, and the real Mosquitto and PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path

from gateway.demo import run_demo
from tests.adapters.mqtt.conftest import MOSQUITTO_HOST, MOSQUITTO_PORT, mosquitto_running
from tests.conftest import require
from tests.gateway.conftest import PG_HOST, PG_PORT, drop_postgres, fresh_postgres_url, port_open


def check(summary: dict, out: str) -> None:
    # the DSO's two evening orders and the ISO's activation; the DSO's late order refused
    assert summary["orders_accepted"] == 3
    assert summary["orders_rejected"] == 1
    # the evening: agr-alpha's two resources and agr-beta's one; the ISO's activation: two
    assert summary["setpoints_received"] == 5
    assert summary["acks_audited"] == 5
    assert summary["audit_ok"]
    # the ISO's activation passed the AC power flow; the DSO's order would overload a line
    assert "acknowledgement A01" in out and "received A41 response: TimeSeries A07" in out
    assert "received FlexOrderResponse Rejected from gridgate: Grid limit exceeded" in out
    assert "line Line 2-3 at" in out and "of it might fit" in out
    assert summary["grid_conflicts"] == 1
    # the DSO's evening selections reached the ISO as ReserveAllocationResults
    assert summary["selections_reported"] == 2
    assert summary["audit_head"] in out
    # the morning: registration with gridgate as the CRO, where the connections lie, prognoses
    assert "DSOPortfolioUpdate: ean.871685900012636543 with 3 connections: Accepted" in out
    assert "AGRPortfolioUpdate: 2 connections: Accepted" in out
    assert "my connections lie on ean.871685900012636543 of dso-north.demo.example" in out
    assert "received D-Prognosis from agr-beta via gridgate" in out


async def test_the_demo_day_on_the_embedded_defaults(tmp_path: Path) -> None:
    out = io.StringIO()
    summary = await run_demo(tmp_path, out=out)
    check(summary, out.getvalue())
    assert summary["database"].startswith("sqlite+aiosqlite:///")
    assert (tmp_path / "gridgate.db").exists()


async def test_the_demo_day_on_real_mosquitto_and_postgresql(tmp_path: Path) -> None:
    require(mosquitto_running(), f"Mosquitto is not listening on {MOSQUITTO_HOST}:{MOSQUITTO_PORT}")
    require(port_open(PG_HOST, PG_PORT), "PostgreSQL is not running on 127.0.0.1:5432")
    url = await fresh_postgres_url()
    try:
        out = io.StringIO()
        summary = await run_demo(
            tmp_path,
            out=out,
            mqtt_url=f"mqtt://{MOSQUITTO_HOST}:{MOSQUITTO_PORT}",
            database_url=url,
        )
        check(summary, out.getvalue())
        assert summary["database"].startswith("postgresql")
    finally:
        await drop_postgres(url)
