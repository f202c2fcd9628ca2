"""First cut: accepted order power per congestion point and ISP stays within a limit (W)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.gridcheck.base import Binding, Decision, Outcome
from gateway.gridcheck.ledger import OrderKey, ledger_orders
from gateway.model import DPrognosis, FlexOrder

METHOD = "capacity-limit/v1"


class CapacityLimitCheck:
    """|Σ accepted power + this order| ≤ limit_w in every ISP the order covers.

    The ledger lives in memory for speed and in the `ledger` table for restarts: the pipeline
    writes the decision's reservations in the same transaction as its audit entry.
    """

    def __init__(self, limits: dict[str, int]) -> None:
        self._limits = limits
        # (congestion point, period) -> isp -> accepted power
        self._ledger: dict[tuple[str, date], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        # reservation token -> what it holds
        self._held: dict[str, list[tuple[str, date, int, int]]] = {}
        # (origin, order MessageID, recipient domain) -> its reservation token, and back
        self._tokens: dict[OrderKey, str] = {}
        self._orders: dict[str, OrderKey] = {}

    async def load(self, engine: AsyncEngine) -> None:
        """Rebuild the in-memory ledger from the table (at start-up)."""
        for key, held in (await ledger_orders(engine)).items():
            kept = [(cp, period, isp, p) for (cp, period, isp), p in held.items() if p]
            if not kept:
                continue
            origin, mid, recipient = key
            token = f"ledger:{origin}:{mid}:{recipient or ''}"
            self._tokens[key] = token
            self._orders[token] = key
            for cp, period, isp, power in kept:
                self._reserve(token, cp, period, isp, power)

    def _reserve(self, token: str, cp: str, period: date, isp: int, power: int) -> None:
        self._ledger[(cp, period)][isp] += power
        self._held.setdefault(token, []).append((cp, period, isp, power))

    def accepted_power(self, congestion_point: str, period: date, isp: int) -> int:
        return self._ledger.get((congestion_point, period), {}).get(isp, 0)

    def forecast(self, prognosis: DPrognosis) -> None:
        """The first cut has no base state: a forecast changes nothing."""

    def check(self, order: FlexOrder, *, origin: str, allow_curtail: bool = False) -> Decision:
        # the first cut never curtails: an order is within the limit or refused whole
        cp = order.congestion_point
        limit = self._limits.get(cp)
        if limit is None:  # fail safe: an unknown congestion point is never accepted
            return Decision(
                Outcome.REJECTED,
                f"no grid limit is configured for congestion point {cp}; the check rejects "
                "what it cannot check",
                METHOD,
            )
        # no shortcut for an order seen before: the pipeline answers true resubmissions
        # before the check, and a reused MessageID is a different order that is checked
        ledger = self._ledger.get((cp, order.period), {})
        worst: Binding | None = None
        powers = order.activated_power_by_isp()
        for isp, power in sorted(powers.items()):
            total = ledger.get(isp, 0) + power
            # name the ISP with the largest excess: the one that binds
            if abs(total) > limit and (worst is None or abs(total) > abs(worst.predicted)):
                worst = Binding(cp, "congestion_point", "flex_power_w", isp, total, limit)
        if worst is not None:
            # the market's local time is what the DSO's operators read
            local = order.isp_start(worst.isp).astimezone(ZoneInfo(order.time_zone))
            start = local.isoformat(timespec="minutes")
            already = ledger.get(worst.isp, 0)
            return Decision(
                Outcome.REJECTED,
                f"ISP {worst.isp} ({start}) on congestion point {cp}: accepted {already} W + "
                f"this order {powers[worst.isp]} W = {int(worst.predicted)} W exceeds the limit "
                f"{limit} W by {int(abs(worst.predicted) - limit)} W",
                METHOD,
                binding=worst,
            )
        reservations = tuple(
            (cp, order.period, isp, power) for isp, power in powers.items() if power
        )
        token = uuid.uuid4().hex
        for _, period, isp, power in reservations:
            self._reserve(token, cp, period, isp, power)
        # an order is known by its recipient too: one MessageID may order two aggregators
        key = (origin, order.envelope.message_id, order.envelope.recipient_domain)
        if reservations and key not in self._tokens:  # a live order's token is kept
            self._tokens[key] = token
            self._orders[token] = key
        ledger = self._ledger.get((cp, order.period), {})
        headroom = min((limit - abs(ledger.get(i, 0)) for i in powers), default=limit)
        return Decision(
            Outcome.ACCEPTED,
            f"within the limit {limit} W of {cp} in all {len(powers)} ISPs "
            f"(least headroom left {headroom} W)",
            METHOD,
            reservations=reservations,
            reservation=token if reservations else None,
        )

    def release(self, token: str, *, notify: bool = True) -> None:
        for cp, period, isp, power in self._held.pop(token, []):
            self._ledger[(cp, period)][isp] -= power
        key = self._orders.pop(token, None)
        if key is not None and self._tokens.get(key) == token:
            del self._tokens[key]

    def cancel(
        self, order_message_id: str, *, origin: str, recipient: str
    ) -> list[tuple[str, date, int, int]]:
        """Give back what the accepted order `order_message_id` of `origin` to `recipient`
        (a UFTP domain) holds; return it, for the ledger to record."""
        token = self._tokens.pop((origin, order_message_id, recipient), None)
        held = [r for r in self._held.get(token, []) if r[3]] if token else []
        if token is not None:
            self.release(token)
        return [(cp, period, isp, power) for cp, period, isp, power in held]
