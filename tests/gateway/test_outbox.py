"""The outbox delivers what was committed, retries with back-off, expires, keeps order."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.audit.chain import AuditDraft
from gateway.config import OutboxSettings
from gateway.errors import PermanentDeliveryError, TemporaryDeliveryError
from gateway.outbox import Outbox, outbox_row
from gateway.store.models import AuditEntry, OutboxEntry
from gateway.store.writer import Unit, Writer


class Peer:
    """A deliverer that fails as told, and records what it got."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.got: list[tuple[str, bytes]] = []

    async def deliver(self, destination: str, payload: bytes) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.got.append((destination, payload))


def row(
    payload: bytes,
    *,
    conversation: str = "c1",
    expires: timedelta = timedelta(hours=1),
    destination: str = "https://peer/x",
) -> dict:
    now = datetime.now(UTC)
    return outbox_row(
        channel="uftp",
        destination=destination,
        recipient="agr",
        payload=payload,
        message_id=payload.decode(),
        conversation_id=conversation,
        expires_at=now + expires,
        now=now,
    )


async def setup(engine: AsyncEngine, peer: Peer, rows: list[dict]) -> tuple[Writer, Outbox]:
    writer = Writer(engine)
    writer.start()
    await writer.submit(Unit(audit=[AuditDraft("test", "t", {})], outbox=rows))
    outbox = Outbox(
        engine,
        writer,
        {"uftp": peer},
        OutboxSettings(retry_base_seconds=0.05, retry_max_seconds=0.2),
    )
    return writer, outbox


def started(engine: AsyncEngine, peer: object, **settings: float) -> tuple[Writer, Outbox]:
    """A running writer and a relay (not looping) that delivers "uftp" rows to `peer`."""
    writer = Writer(engine)
    writer.start()
    return writer, Outbox(engine, writer, {"uftp": peer}, OutboxSettings(**settings))


async def commit_and_hand_over(
    writer: Writer, outbox: Outbox, rows: list[dict], *, claimed_until: datetime | None = None
) -> None:
    """What the pipeline does: write rows claimed by this process, then hand them over."""
    for r in rows:
        r["claimed_until"] = claimed_until or datetime.now(UTC) + outbox.lease
    committed = await writer.submit(Unit(audit=[AuditDraft("test", "t", {})], outbox=rows))
    outbox.hand_over(rows, committed.outbox_ids)


async def events(engine: AsyncEngine) -> list[str]:
    """Every delivery outcome the audit log lists, in order, as `delivery.<outcome>`."""
    async with engine.connect() as conn:
        details = (
            await conn.scalars(
                select(AuditEntry.detail)
                .where(AuditEntry.event == "delivery.outcomes")
                .order_by(AuditEntry.seq)
            )
        ).all()
    return [
        f"delivery.{outcome}"
        for detail in details
        for outcome, items in json.loads(detail).items()
        for _ in items
    ]


async def test_delivered_rows_are_marked_and_audited(engine: AsyncEngine) -> None:
    peer = Peer()
    writer, outbox = await setup(
        engine, peer, [row(b"m1", conversation="a"), row(b"m2", conversation="b")]
    )
    assert await outbox.run_once() == 2
    assert sorted(p for _, p in peer.got) == [b"m1", b"m2"]
    assert await outbox.counts() == {"delivered": 2}
    assert (await events(engine)).count("delivery.delivered") == 2
    assert await outbox.run_once() == 0  # nothing is delivered twice
    await writer.stop()


async def test_temporary_failures_are_retried_with_backoff_until_delivered(
    engine: AsyncEngine,
) -> None:
    peer = Peer([TemporaryDeliveryError("503"), TemporaryDeliveryError("timeout")])
    writer, outbox = await setup(engine, peer, [row(b"m1")])
    assert await outbox.run_once() == 1
    assert peer.got == []
    assert await outbox.run_once() == 0  # not due yet: back-off
    for _ in range(50):
        await asyncio.sleep(0.05)
        await outbox.run_once()
        if peer.got:
            break
    assert peer.got == [("https://peer/x", b"m1")]
    async with engine.connect() as conn:
        entry = (await conn.execute(select(OutboxEntry))).one()
    assert entry.status == "delivered" and entry.attempts == 3
    assert (await events(engine)).count("delivery.retry") == 2
    await writer.stop()


async def test_a_permanent_failure_stops_and_is_audited(engine: AsyncEngine) -> None:
    peer = Peer([PermanentDeliveryError("HTTP 400: Invalid Message")])
    writer, outbox = await setup(engine, peer, [row(b"m1")])
    await outbox.run_once()
    assert await outbox.counts() == {"failed": 1}
    assert "delivery.failed" in await events(engine)
    await writer.stop()


async def test_an_expired_message_is_never_delivered(engine: AsyncEngine) -> None:
    peer = Peer()
    writer, outbox = await setup(engine, peer, [row(b"m1", expires=timedelta(seconds=-1))])
    await outbox.run_once()
    assert peer.got == []
    assert await outbox.counts() == {"expired": 1}
    assert "delivery.expired" in await events(engine)
    await writer.stop()


async def test_one_conversation_is_delivered_in_order_even_across_retries(
    engine: AsyncEngine,
) -> None:
    peer = Peer([TemporaryDeliveryError("down")])
    writer, outbox = await setup(engine, peer, [row(b"first"), row(b"second"), row(b"third")])
    await outbox.run_once()  # "first" fails; the others wait behind it
    assert peer.got == []
    for _ in range(60):
        await asyncio.sleep(0.05)
        await outbox.run_once()
        if len(peer.got) == 3:
            break
    assert [p for _, p in peer.got] == [b"first", b"second", b"third"]
    await writer.stop()


async def test_a_claimed_row_is_not_claimed_again_until_its_lease_ends(engine: AsyncEngine) -> None:
    peer = Peer()
    writer, _ = await setup(engine, peer, [row(b"m1")])
    outbox = Outbox(engine, writer, {"uftp": peer}, OutboxSettings(claim_lease_seconds=0.5))
    first = await outbox.claim_due(10)
    second = await outbox.claim_due(10)
    assert [c.payload for c in first] == [b"m1"] and second == []
    await asyncio.sleep(0.6)  # the claimer crashed: its lease ends, the row comes back
    assert [c.payload for c in await outbox.claim_due(10)] == [b"m1"]
    await writer.stop()


async def test_handed_over_rows_are_delivered_without_reading_them_back(
    engine: AsyncEngine,
) -> None:
    peer = Peer()
    writer, outbox = started(engine, peer)
    rows = [row(b"m1", conversation="a"), row(b"m2", conversation="a"), row(b"m3")]
    await commit_and_hand_over(writer, outbox, rows)
    assert await outbox.claim_due(10) == []  # claimed at insert: not the database path's
    assert await outbox.run_ready() == 2  # one per ordering key: m1 and m3
    assert await outbox.run_ready() == 1  # then m2, after m1
    assert [p for _, p in peer.got] == [b"m1", b"m3", b"m2"]
    assert await outbox.counts() == {"delivered": 3}
    await writer.stop()


async def test_a_failed_handed_over_row_gives_its_key_back_to_the_database_in_order(
    engine: AsyncEngine,
) -> None:
    peer = Peer([TemporaryDeliveryError("down")])
    writer, outbox = started(engine, peer, retry_base_seconds=0.05, retry_max_seconds=0.1)
    rows = [row(b"first"), row(b"second")]
    await commit_and_hand_over(writer, outbox, rows)
    await outbox.run_ready()  # "first" fails; "second" goes back to the database path
    assert outbox.backlog == 0
    for _ in range(60):
        await asyncio.sleep(0.05)
        await outbox.run_once()
        if len(peer.got) == 2:
            break
    assert [p for _, p in peer.got] == [b"first", b"second"]
    await writer.stop()


async def test_stopping_releases_rows_handed_over_but_not_attempted(engine: AsyncEngine) -> None:
    writer, outbox = started(engine, Peer())
    rows = [row(b"m1")]
    await commit_and_hand_over(writer, outbox, rows)
    await outbox.stop()
    restarted = Outbox(engine, writer, {"uftp": Peer()}, OutboxSettings())
    assert [c.payload for c in await restarted.claim_due(10)] == [b"m1"]
    await writer.stop()


async def test_a_new_row_waits_behind_an_older_row_of_its_key_that_is_retrying(
    engine: AsyncEngine,
) -> None:
    """Order within a key holds when the fast path meets a row waiting for its retry."""
    peer = Peer([TemporaryDeliveryError("down")])
    writer, outbox = started(engine, peer, retry_base_seconds=0.2, retry_max_seconds=0.3)

    async def hand(payload: bytes) -> None:
        rows = [row(payload)]
        await commit_and_hand_over(writer, outbox, rows)

    await hand(b"first")
    await outbox.run_ready()  # fails: "first" waits in the database for its retry
    await hand(b"second")  # same key: must not overtake
    assert await outbox.run_ready() == 0
    for _ in range(80):
        await asyncio.sleep(0.05)
        await outbox._release_given_back()
        await outbox.run_once()
        if len(peer.got) == 2:
            break
    assert [p for _, p in peer.got] == [b"first", b"second"]
    await hand(b"third")  # nothing waits any more: the fast path takes it again
    assert await outbox.run_ready() == 1
    await writer.stop()


async def test_a_row_whose_claim_ran_out_is_left_to_the_database_path(engine: AsyncEngine) -> None:
    peer = Peer()
    writer, outbox = started(engine, peer)
    rows = [row(b"m1")]
    await commit_and_hand_over(
        writer, outbox, rows, claimed_until=datetime.now(UTC) + timedelta(milliseconds=500)
    )
    await asyncio.sleep(0.6)  # the claim is over before the fast path gets to it
    assert await outbox.run_ready() == 1
    assert peer.got == []  # not delivered by the one whose claim ran out...
    (again,) = await outbox.claim_due(10)  # ...but claimable, once, by the database path
    assert again.payload == b"m1"
    await writer.stop()


async def test_a_delivery_that_outlasts_its_claim_is_cut_short_and_retried(
    engine: AsyncEngine,
) -> None:
    class Hanging:
        async def deliver(self, destination: str, payload: bytes) -> None:
            await asyncio.sleep(30)

    writer, outbox = started(engine, Hanging())
    rows = [row(b"m1")]
    await commit_and_hand_over(
        writer, outbox, rows, claimed_until=datetime.now(UTC) + timedelta(seconds=1.5)
    )
    await asyncio.wait_for(outbox.run_ready(), 5)
    assert "delivery.retry" in await events(engine)
    await writer.stop()
