"""`gridgate demo` end to end: embedded defaults, and the real Mosquitto and PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path

from gateway.demo import run_demo
from tests.adapters.mqtt.conftest import MOSQUITTO_HOST, MOSQUITTO_PORT, mosquitto_running
from tests.conftest import require
from tests.gateway.conftest import PG_HOST, PG_PORT, drop_postgres, fresh_postgres_url, port_open


def check(summary: dict, out: str) -> None:
    assert summary["orders_accepted"] == 1
    assert summary["orders_rejected"] == 1
    assert summary["setpoints_received"] == 2  # agr-alpha's two resources
    assert summary["acks_audited"] == 2
    assert summary["audit_ok"]
    assert "Grid limit exceeded: ISP 69" in out
    assert "exceeds the limit 400000 W by 50000 W" in out
    assert "nothing was forwarded" in out
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
