"""What the `ledger` table says each accepted order holds, for a check to rebuild from.

An order is known by its origin (the participant that ordered), its MessageID and its
recipient's UFTP domain: UFTP keys a message by (MessageID, sender, recipient), so one
MessageID may order two aggregators, and each of those orders holds its own power. Rows
written before the ledger named the recipient (`recipient_domain` NULL) take it from the
messages table when that names a single recipient for the MessageID; where it names several
they stay an order of unknown recipient, which no aggregator's refusal can give back (the
ledger may over-count, never under-count) and which holds its power until its period ends.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.models import LedgerEntry, MessageRecord

# (origin, order MessageID, recipient domain or None when unknown)
OrderKey = tuple[str, str, str | None]
# (congestion point, period, isp) -> net power (W)
Holdings = dict[tuple[str, date, int], int]


async def ledger_orders(engine: AsyncEngine) -> dict[OrderKey, Holdings]:
    """The ledger table's rows summed per order and (congestion point, period, ISP)."""
    rows: list[tuple[str, str, str | None, str, date, int, int]] = []
    async with engine.connect() as conn:
        for row in await conn.execute(select(LedgerEntry)):
            rows.append(
                (
                    row.origin,
                    row.order_message_id,
                    row.recipient_domain,
                    row.congestion_point,
                    row.period,
                    row.isp,
                    row.power,
                )
            )
        # rows of before the column: their recipient as the messages table names it
        ids = sorted({r[1] for r in rows if r[2] is None})
        recipients: dict[str, set[str]] = {}
        for start in range(0, len(ids), 500):
            found = await conn.execute(
                select(MessageRecord.message_id, MessageRecord.recipient_domain).where(
                    MessageRecord.kind == "FlexOrder",
                    MessageRecord.message_id.in_(ids[start : start + 500]),
                )
            )
            for mid, domain in found:
                recipients.setdefault(mid, set()).add(domain)
    orders: dict[OrderKey, Holdings] = {}
    for origin, mid, recipient, cp, period, isp, power in rows:
        if recipient is None:
            domains = recipients.get(mid, set())
            recipient = next(iter(domains)) if len(domains) == 1 else None
        held = orders.setdefault((origin, mid, recipient), {})
        held[(cp, period, isp)] = held.get((cp, period, isp), 0) + power
    return orders
