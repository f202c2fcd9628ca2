"""Fixtures for the core: databases (SQLite file and the real PostgreSQL), keys, configs."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.uftp.signing import private_key_b64, public_key_b64
from gateway.store.db import create_engine, migrate
from tests.conftest import require

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_URL = os.environ.get(
    "GRIDGATE_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def secret_b64(key: Ed25519PrivateKey) -> str:
    return private_key_b64(key)


def public_b64(key: Ed25519PrivateKey) -> str:
    return public_key_b64(key.public_key())


async def fresh_postgres_url() -> str:
    """Create a throw-away database on the real PostgreSQL and return its URL."""
    import asyncpg

    name = f"gg_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"


async def drop_postgres(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, and a new database on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'gridgate.db'}"
        return
    require(port_open(PG_HOST, PG_PORT), "PostgreSQL is not running on 127.0.0.1:5432")
    url = await fresh_postgres_url()
    try:
        yield url
    finally:
        await drop_postgres(url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()
        await asyncio.sleep(0)


# the world of the pipeline tests, for every test module here
from tests.gateway.world import world  # noqa: E402, F401
