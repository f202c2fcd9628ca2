"""The check's interface and its answer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.model import FlexOrder


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    CURTAILED = "curtailed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Binding:
    """The element that limits the activation, and by how much."""

    element: str  # id of the element (a congestion point in the first cut)
    element_type: str  # "congestion_point", "line", "transformer", "node", "interface"
    metric: str  # e.g. "flex_power_w", "loading", "v_max"
    isp: int
    predicted: float
    limit: float

    @property
    def margin(self) -> float:
        return self.limit - abs(self.predicted)


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str
    method: str
    binding: Binding | None = None
    # rows for the ledger when accepted: (congestion point, period, isp, power)
    reservations: tuple[tuple[str, Any, int, int], ...] = field(default=())
    # the token that gives the reservations back (GridCheck.release)
    reservation: str | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome is not Outcome.REJECTED

    def audit_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "method": self.method,
        }
        if self.binding is not None:
            b = self.binding
            detail["binding"] = {
                "element": b.element,
                "type": b.element_type,
                "metric": b.metric,
                "isp": b.isp,
                "predicted": b.predicted,
                "limit": b.limit,
                "margin": b.margin,
            }
        return detail


class GridCheck(Protocol):
    """Decide on an order and, when it is accepted, hold its power until `release`."""

    def check(self, order: FlexOrder, *, origin: str) -> Decision:
        """Decide; an accepted decision is reserved at once (the caller commits or releases)."""

    def accepted_power(self, congestion_point: str, period: Any, isp: int) -> int:
        """The power (W) accepted orders hold at a congestion point in one ISP."""

    def release(self, token: str) -> None:
        """Undo a reservation whose commit failed, or an order that was revoked or expired."""

    def cancel(self, order_message_id: str, *, origin: str) -> list[tuple[str, Any, int, int]]:
        """Give back what a committed order holds (it was never carried out); return the
        reservations given back, for the ledger table to record as their opposites."""
