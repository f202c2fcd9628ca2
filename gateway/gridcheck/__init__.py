"""The TSO-DSO grid-security check: may this activation reach the DERs?

`GridCheck` is the interface the pipeline calls for every activation. The first cut,
`CapacityLimitCheck`, holds the sum of accepted order power per congestion point and ISP
within the DSO's configured limit; the power-flow check replaces it behind this interface.
"""

from gateway.gridcheck.base import Binding, Decision, GridCheck, Outcome
from gateway.gridcheck.capacity import CapacityLimitCheck

__all__ = ["Binding", "CapacityLimitCheck", "Decision", "GridCheck", "Outcome"]
