"""The TSO-DSO grid-security check: may this activation reach the DERs?

`GridCheck` is the interface the pipeline calls for every activation. The first cut,
`CapacityLimitCheck`, holds the sum of accepted order power per congestion point and ISP
within the DSO's configured limit; `PowerFlowCheck` (gateway.gridcheck.powerflow, config
`[gridcheck] method = "powerflow"`) decides on an exact AC power flow of the DSO's grid. It is
not imported here: it needs power-grid-model, which the capacity check does not.
"""

from gateway.gridcheck.base import Binding, Conflict, Decision, GridCheck, Outcome
from gateway.gridcheck.capacity import CapacityLimitCheck

__all__ = ["Binding", "CapacityLimitCheck", "Conflict", "Decision", "GridCheck", "Outcome"]
