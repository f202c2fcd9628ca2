"""The check's interface and its answer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gateway.model import DPrognosis, FlexOrder


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    CURTAILED = "curtailed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Binding:
    """The element that limits the activation, and by how much."""

    # id of the element: a congestion point (capacity check), a line or transformer name,
    # a node name, or the slack node's name for the TSO-DSO interface
    element: str
    element_type: str  # "congestion_point", "line", "transformer", "node", "interface"
    # "flex_power_w" (W), "loading" (fraction of the rating), "v_max"/"v_min" (pu),
    # "interface_mw" (MW, positive = import from the TSO)
    metric: str
    isp: int
    predicted: float
    limit: float  # the limit the check enforced: the rating less the safety margin
    # the safety margin the zone's operator config takes off the rating (same unit)
    safety_margin: float = 0.0

    @property
    def margin(self) -> float:
        """What is left before the limit (negative: the limit is exceeded)."""
        if self.metric == "v_min":  # a lower bound
            return self.predicted - self.limit
        return self.limit - abs(self.predicted)


@dataclass(frozen=True, slots=True)
class Conflict:
    """An accepted activation of the other side (ISO vs DSO) in the opposite direction."""

    order_message_id: str
    origin: str
    role: str  # the accepted order's origin role: "ISO" or "DSO"
    isp: int
    power: int  # what the accepted order holds in that ISP (W)


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
    # the share of the ordered power the reservations hold (1.0 accepted, α curtailed)
    fraction: float | None = None
    # opposite-direction activations of the other side in the same zone and ISP
    conflicts: tuple[Conflict, ...] = ()
    # what the decision was taken on: the grid model's version and the base state's time
    model_version: str | None = None
    base_state_time: datetime | None = None

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
            if b.safety_margin:
                detail["binding"]["safety_margin"] = b.safety_margin
        if self.fraction is not None:
            detail["fraction"] = self.fraction
        if self.conflicts:
            detail["conflicts"] = [
                {
                    "order_message_id": c.order_message_id,
                    "origin": c.origin,
                    "role": c.role,
                    "isp": c.isp,
                    "power": c.power,
                }
                for c in self.conflicts
            ]
        if self.model_version is not None:
            detail["model_version"] = self.model_version
        if self.base_state_time is not None:
            detail["base_state_time"] = self.base_state_time.isoformat()
        return detail


class GridCheck(Protocol):
    """Decide on an order and, when it is accepted, hold its power until `release`."""

    def check(self, order: FlexOrder, *, origin: str, allow_curtail: bool = False) -> Decision:
        """Decide; an accepted decision is reserved at once (the caller commits or releases).

        With `allow_curtail` the check may answer CURTAILED: its reservations hold only the
        share of the order that is safe, and the caller carries out only that share.

        The reservation belongs to the order (origin, MessageID, the envelope's recipient
        domain): a repeat of it holds nothing more, the same MessageID to another recipient
        is another order."""

    def accepted_power(self, congestion_point: str, period: Any, isp: int) -> int:
        """The power (W) accepted orders hold at a congestion point in one ISP."""

    def release(self, token: str, *, notify: bool = True) -> None:
        """Undo a reservation whose commit failed, or an order that was revoked or expired.

        `notify=False`: the reservation was a trial that nothing relied on (re-validation,
        where the check has it, need not run)."""

    def forecast(self, prognosis: DPrognosis) -> None:
        """A new forecast of a congestion point's power arrived (an aggregator's
        D-Prognosis): a check that keeps a base state refreshes it."""

    def cancel(
        self, order_message_id: str, *, origin: str, recipient: str
    ) -> list[tuple[str, Any, int, int]]:
        """Give back what a committed order holds (it was never carried out); return the
        reservations given back, for the ledger table to record as their opposites.

        An order is known by its origin, MessageID and recipient (the UFTP domain it went
        to): the same MessageID to another aggregator is another order, which keeps its
        power."""
