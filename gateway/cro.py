"""gridgate as the common reference operator (CRO): who has which connections where.

A DSO registers its congestion points, each with the connections behind it
(DSOPortfolioUpdate); an aggregator registers the connections it serves
(AGRPortfolioUpdate). The CRO answers on a need-to-know basis: a DSO learns which
aggregator serves each connection of its own congestion point (DSOPortfolioQuery), an
aggregator learns the congestion points its connections lie on (AGRPortfolioQuery).

The register is a fold over the accepted updates: the latest update of a congestion point
replaces its earlier registration, an aggregator's latest registration of a connection
replaces its earlier one. The updates themselves stay in the audit log, from which the
register is rebuilt at start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.model import (
    AGRPortfolioQuery,
    AGRPortfolioUpdate,
    DsoCongestionPointView,
    DSOPortfolioQuery,
    DSOPortfolioUpdate,
    DsoView,
    Message,
    MessageKind,
    PortfolioCongestionPoint,
    PortfolioConnection,
    QueriedConnection,
)
from gateway.store.models import AuditEntry, MessageRecord

UPDATE_KINDS = (MessageKind.DSO_PORTFOLIO_UPDATE.value, MessageKind.AGR_PORTFOLIO_UPDATE.value)


def _active(start: date, end: date | None, period: date) -> bool:
    """A registration holds from its StartPeriod through its EndPeriod (inclusive)."""
    return start <= period and (end is None or period <= end)


def registered_on(cp: PortfolioCongestionPoint, period: date) -> bool:
    """The congestion point's registration holds on `period`."""
    return _active(cp.start_period, cp.end_period, period)


class NotRegistered(LookupError):
    """A query about something the asker has not registered."""


@dataclass
class CommonReference:
    """The CRO's register of congestion points and connections."""

    # congestion point -> (the DSO domain that registered it, its latest registration)
    congestion_points: dict[str, tuple[str, PortfolioCongestionPoint]] = field(default_factory=dict)
    # aggregator domain -> connection entity address -> its latest registration
    connections: dict[str, dict[str, PortfolioConnection]] = field(default_factory=dict)

    def apply(self, update: Message) -> None:
        """Fold an accepted portfolio update into the register."""
        sender = update.envelope.sender_domain
        if isinstance(update, DSOPortfolioUpdate):
            for cp in update.congestion_points:
                self.congestion_points[cp.entity_address] = (sender, cp)
        elif isinstance(update, AGRPortfolioUpdate):
            mine = self.connections.setdefault(sender, {})
            for connection in update.connections:
                mine[connection.entity_address] = connection

    def registered_by(self, congestion_point: str) -> str | None:
        entry = self.congestion_points.get(congestion_point)
        return None if entry is None else entry[0]

    def dso_view(self, query: DSOPortfolioQuery) -> tuple[QueriedConnection, ...]:
        """The connections of the asking DSO's congestion point, each with its aggregator."""
        dso, period = query.envelope.sender_domain, query.period
        entry = self.congestion_points.get(query.entity_address)
        if (
            entry is None
            or entry[0] != dso
            or not _active(entry[1].start_period, entry[1].end_period, period)
        ):
            raise NotRegistered(
                f"{dso} has registered no congestion point {query.entity_address} for {period}"
            )
        return tuple(
            QueriedConnection(c.entity_address, self._aggregator_of(c.entity_address, period))
            for c in entry[1].connections
            if _active(c.start_period, c.end_period, period)
        )

    def agr_view(self, query: AGRPortfolioQuery) -> tuple[DsoView, ...]:
        """The congestion points (per DSO) the asking aggregator's connections lie on."""
        agr, period = query.envelope.sender_domain, query.period
        mine = {
            address
            for address, c in self.connections.get(agr, {}).items()
            if _active(c.start_period, c.end_period, period)
        }
        if not mine:
            raise NotRegistered(f"{agr} has registered no connection for {period}")
        by_dso: dict[str, list[DsoCongestionPointView]] = {}
        placed: set[str] = set()
        for address, (dso, cp) in sorted(self.congestion_points.items()):
            if not _active(cp.start_period, cp.end_period, period):
                continue
            on_cp = tuple(
                sorted(
                    c.entity_address
                    for c in cp.connections
                    if c.entity_address in mine and _active(c.start_period, c.end_period, period)
                )
            )
            if not on_cp:
                continue
            placed.update(on_cp)
            by_dso.setdefault(dso, []).append(
                DsoCongestionPointView(
                    entity_address=address,
                    mutex_offers_supported=cp.mutex_offers_supported,
                    day_ahead_redispatch_by=cp.day_ahead_redispatch_by,
                    connections=on_cp,
                    intraday_redispatch_by=cp.intraday_redispatch_by,
                )
            )
        if not by_dso:
            raise NotRegistered(
                f"no connection {agr} registered for {period} lies on a registered congestion point"
            )
        return (
            DsoView(
                portfolios=tuple((dso, tuple(cps)) for dso, cps in sorted(by_dso.items())),
                connections=tuple(sorted(mine - placed)),
            ),
        )

    def _aggregator_of(self, connection: str, period: date) -> str | None:
        for agr, registered in sorted(self.connections.items()):
            c = registered.get(connection)
            if c is not None and _active(c.start_period, c.end_period, period):
                return agr
        return None

    async def load(
        self, engine: AsyncEngine, domain: str, reread: Callable[[bytes], Message]
    ) -> None:
        """Rebuild the register from the accepted updates addressed to gridgate."""
        async with engine.connect() as conn:
            bodies: Iterable[bytes | None] = await conn.scalars(
                select(AuditEntry.body)
                .join(MessageRecord, MessageRecord.audit_seq == AuditEntry.seq)
                .where(
                    MessageRecord.kind.in_(UPDATE_KINDS),
                    MessageRecord.recipient_domain == domain,
                    MessageRecord.decision == "accepted",
                )
                .order_by(MessageRecord.id)
            )
            for body in bodies:
                if body is not None:
                    self.apply(reread(body))
