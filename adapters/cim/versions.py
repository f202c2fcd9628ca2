"""Which CIM document versions gridgate accepts: namespace ⇄ (root element, version) ⇄ profile.

The version is part of an ESMP namespace (NOTES §2), so the parser dispatches on the root
element's namespace, and the emitter writes the namespace of the document's `version`.

Acknowledgement version rule (`acknowledgement_version`): gridgate answers every inbound
ESMP document with an Acknowledgement_MarketDocument 8.1, the version the Nordic mFRR
implementations pair with activation 6.2 and reserve bid 7.2/7.4 (the Statnett examples,
Fingrid's mFRR guide). An acknowledgement's own version is not announced by the document it
answers, so "the sender's version" cannot be read off it; a participant that wants 7.0
(the Transparency Platform's) or 9.0 has it configured, and the caller passes it as
`preferred`. 9.0 adds only Rejected_Series / Rejected_MktActivityRecord, which none of the
documents gridgate accepts have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# cim_profiles/ sits at the top of the repository, beside adapters/
PROFILES_DIR = Path(__file__).resolve().parents[2] / "cim_profiles"

_ESMP = "urn:iec62325.351:tc57wg16"


@dataclass(frozen=True, slots=True)
class DocumentVersion:
    """One accepted (root element, version): its namespace and gridgate's profile for it."""

    root: str
    version: str
    namespace: str
    profile: str  # file name in cim_profiles/
    chameleon: bool = True  # the profile has no target namespace of its own
    # the root elements of a message that wraps the document (61968-100), if it is wrapped
    envelopes: tuple[str, ...] = ()

    def accepts_root(self, name: str) -> bool:
        return name in self.envelopes if self.envelopes else name == self.root

    @property
    def label(self) -> str:
        """How messages name it: `Activation_MarketDocument 6.2`."""
        return f"{self.root} {self.version}"


ACTIVATION = "Activation_MarketDocument"
RESERVE_BID = "ReserveBid_MarketDocument"
ACKNOWLEDGEMENT = "Acknowledgement_MarketDocument"
BID_AVAILABILITY = "BidAvailability_MarketDocument"
RESERVE_ALLOCATION_RESULT = "ReserveAllocationResult_MarketDocument"
METER_READINGS = "MeterReadings"
CAPACITY = "Capacity_MarketDocument"

# the 61968-100 message envelope around MeterReadings (TC57 2011, NOTES §4)
METER_READINGS_MESSAGE_NS = "http://www.iec.ch/TC57/2011/MeterReadingsMessage"
MESSAGE_NS = "http://www.iec.ch/TC57/2011/schema/message"
METER_READINGS_NS = "http://iec.ch/TC57/2011/MeterReadings#"
# 61968-100 verb → the MeterReadings message's root element
METER_READINGS_ROOT_BY_VERB = {
    "create": "CreateMeterReadings",
    "change": "ChangeMeterReadings",
    "created": "CreatedMeterReadings",
    "changed": "ChangedMeterReadings",
    "reply": "MeterReadingsResponseMessage",
}

VERSIONS: tuple[DocumentVersion, ...] = (
    DocumentVersion(ACTIVATION, "6.2", f"{_ESMP}:451-7:activationdocument:6:2", "activation-6.xsd"),
    DocumentVersion(ACTIVATION, "6.4", f"{_ESMP}:451-7:activationdocument:6:4", "activation-6.xsd"),
    DocumentVersion(
        RESERVE_BID, "7.2", f"{_ESMP}:451-7:reservebiddocument:7:2", "reservebid-7.xsd"
    ),
    DocumentVersion(
        RESERVE_BID, "7.4", f"{_ESMP}:451-7:reservebiddocument:7:4", "reservebid-7.xsd"
    ),
    DocumentVersion(
        RESERVE_BID, "7.6", f"{_ESMP}:451-7:reservebiddocument:7:6", "reservebid-7.xsd"
    ),
    # the Nordic Balancing Model variant of 7.2 (inclusive bids), SOURCE.md
    DocumentVersion(
        RESERVE_BID, "7.2-nbm", "urn:iec62325:ediel:nbm:reservebiddocument:7:2", "reservebid-7.xsd"
    ),
    DocumentVersion(
        ACKNOWLEDGEMENT,
        "7.0",
        f"{_ESMP}:451-1:acknowledgementdocument:7:0",
        "acknowledgement.xsd",
    ),
    DocumentVersion(
        ACKNOWLEDGEMENT,
        "8.1",
        f"{_ESMP}:451-1:acknowledgementdocument:8:1",
        "acknowledgement.xsd",
    ),
    DocumentVersion(
        ACKNOWLEDGEMENT,
        "9.0",
        f"{_ESMP}:451-1:acknowledgementdocument:9:0",
        "acknowledgement.xsd",
    ),
    DocumentVersion(
        BID_AVAILABILITY,
        "1.1",
        f"{_ESMP}:451-n:bidavailabilitydocument:1:1",
        "bidavailability-1.xsd",
    ),
    DocumentVersion(
        RESERVE_ALLOCATION_RESULT,
        "6.5",
        f"{_ESMP}:451-7:reserveallocationresultdocument:6:5",
        "reserveallocationresult-6.xsd",
    ),
    DocumentVersion(
        METER_READINGS,
        "2011",
        METER_READINGS_MESSAGE_NS,
        "meterreadings-message-2011.xsd",
        chameleon=False,
        envelopes=tuple(METER_READINGS_ROOT_BY_VERB.values()),
    ),
    # a TSO-DSO interface capacity: a temporary limit of a grid zone (adapters/cim/capacity.py)
    DocumentVersion(CAPACITY, "8.4", f"{_ESMP}:451-3:capacitydocument:8:4", "capacity-8.xsd"),
)

BY_NAMESPACE: dict[str, DocumentVersion] = {v.namespace: v for v in VERSIONS}
BY_ROOT_VERSION: dict[tuple[str, str], DocumentVersion] = {(v.root, v.version): v for v in VERSIONS}

DEFAULT_ACKNOWLEDGEMENT_VERSION = "8.1"
ACKNOWLEDGEMENT_VERSIONS = ("7.0", "8.1", "9.0")
# inbound document → the acknowledgement version that answers it (module docstring)
ACKNOWLEDGEMENT_FOR: dict[str, str] = {
    ACTIVATION: "8.1",  # Statnett: activation 6.2 with acknowledgement 8.1
    RESERVE_BID: "8.1",  # Statnett 7.2 and Fingrid 7.4 bids are acknowledged in 8.1
    BID_AVAILABILITY: DEFAULT_ACKNOWLEDGEMENT_VERSION,
    RESERVE_ALLOCATION_RESULT: DEFAULT_ACKNOWLEDGEMENT_VERSION,
    CAPACITY: DEFAULT_ACKNOWLEDGEMENT_VERSION,
}


def lookup(root: str, version: str) -> DocumentVersion:
    """Return the accepted (root, version), or raise ValueError naming what is accepted."""
    found = BY_ROOT_VERSION.get((root, version))
    if found is None:
        known = ", ".join(v.version for v in VERSIONS if v.root == root) or "none"
        raise ValueError(f"{root} version {version!r} is not one gridgate writes ({known})")
    return found


def acknowledgement_version(inbound_root: str | None, preferred: str | None = None) -> str:
    """The Acknowledgement_MarketDocument version that answers an inbound document.

    `inbound_root` is the inbound root element (None when unreadable); `preferred` is the
    participant's configured version (7.0, 8.1 or 9.0), which wins.
    """
    if preferred is not None:
        if preferred not in ACKNOWLEDGEMENT_VERSIONS:
            raise ValueError(
                f"acknowledgement version {preferred!r} is not one of {ACKNOWLEDGEMENT_VERSIONS}"
            )
        return preferred
    return ACKNOWLEDGEMENT_FOR.get(inbound_root or "", DEFAULT_ACKNOWLEDGEMENT_VERSION)
