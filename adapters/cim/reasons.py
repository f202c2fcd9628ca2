"""The typed catalogue of ESMP acknowledgement reason codes, and the CIM rejection.

`CimReason` members are the codes of the ENTSO-E `StandardReasonCodeTypeList` (code list
urn:entsoe.eu:wgedi:codelists, NOTES §3) that gridgate writes into an
Acknowledgement_MarketDocument; a member's name is the code list's name and its value is the
code itself (unlike the UFTP catalogue, whose values are wording): the code is what goes on
the wire, the name is `CimReason.standard_name`.

Which code gridgate uses for which refusal (cim_profiles/README.md has the same table):

| refusal | code |
|---|---|
| not XML, a DTD, oversize, wrong encoding; a namespace (version) or document type gridgate |  |
| does not process | A94 |
| a mandatory element or attribute missing | A69 |
| sender id/coding scheme/role | A78 |
| receiver id/coding scheme/role | A53 |
| process type | A79 |
| business type (also: not B74 in bids, not B75/B90 in needs) | A62 |
| registered resource | A64 |
| domain.mRID | A80; acquiring/connecting domain A23 |
| a time interval: end not after start, not a calendar date, a Period outside the document | A04 |
| a resolution that does not divide its interval, or does not fit the number of points | A41 |
| a position out of range or repeated | A49 |
| a quantity that is negative | A46; a quantity that is not a number A42 |
| a unit that is not power (MAW/KWT) where power is expected, or energy where energy is | A59 |
| a currency | A61 |
| anything else the profile refuses (an element out of order, a national code) | 999 |

The whole document is rejected (document-level A02, then the specific code with a text that
names the element and the line); `CimRejection.time_series` names the time series where the
fault is in one, for a `Rejected_TimeSeries`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import Reason, Rejection

REASON_TEXT_LIMIT = 512  # Reason.text, ReasonText_String maxLength


class CimReason(Reason):
    """An ESMP acknowledgement reason code (StandardReasonCodeTypeList)."""

    ERRORS_NOT_SPECIFICALLY_IDENTIFIED = "999"
    MESSAGE_FULLY_ACCEPTED = "A01"
    MESSAGE_FULLY_REJECTED = "A02"
    MESSAGE_CONTAINS_ERRORS_AT_THE_TIME_SERIES_LEVEL = "A03"
    TIME_INTERVAL_INCORRECT = "A04"
    SENDER_WITHOUT_VALID_CONTRACT = "A05"
    TIME_SERIES_FULLY_REJECTED = "A20"
    TIME_SERIES_ACCEPTED_WITH_SPECIFIC_TIME_INTERVAL_ERRORS = "A21"
    IN_PARTY_OUT_PARTY_INVALID = "A22"
    AREA_INVALID = "A23"
    RESOLUTION_INCONSISTENCY = "A41"
    QUANTITY_INCONSISTENCY = "A42"
    QUANTITIES_MUST_NOT_BE_SIGNED_VALUES = "A46"
    POSITION_INCONSISTENCY = "A49"
    SENDERS_TIME_SERIES_VERSION_CONFLICT = "A50"
    MESSAGE_IDENTIFICATION_OR_VERSION_CONFLICT = "A51"
    RECEIVING_PARTY_INCORRECT = "A53"
    TIME_SERIES_IDENTIFICATION_CONFLICT = "A55"
    DEADLINE_LIMIT_EXCEEDED_GATE_NOT_OPEN = "A57"
    NOT_COMPLIANT_TO_LOCAL_MARKET_RULES = "A59"
    CURRENCY_INVALID = "A61"
    INVALID_BUSINESS_TYPE = "A62"
    RESOURCE_OBJECT_INVALID = "A64"
    MANDATORY_ATTRIBUTES_MISSING = "A69"
    SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID = "A78"
    PROCESS_TYPE_INVALID = "A79"
    DOMAIN_INVALID = "A80"
    DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM = "A94"
    INCOMPLETE_DOCUMENT = "B01"

    @property
    def standard_name(self) -> str:
        """The code list's name of this code, e.g. "Resolution inconsistency"."""
        return _STANDARD_NAMES[self]


_STANDARD_NAMES: dict[CimReason, str] = {
    CimReason.ERRORS_NOT_SPECIFICALLY_IDENTIFIED: "Errors not specifically identified",
    CimReason.MESSAGE_FULLY_ACCEPTED: "Message fully accepted",
    CimReason.MESSAGE_FULLY_REJECTED: "Message fully rejected",
    CimReason.MESSAGE_CONTAINS_ERRORS_AT_THE_TIME_SERIES_LEVEL: (
        "Message contains errors at the time series level"
    ),
    CimReason.TIME_INTERVAL_INCORRECT: "Time interval incorrect",
    CimReason.SENDER_WITHOUT_VALID_CONTRACT: "Sender without valid contract",
    CimReason.TIME_SERIES_FULLY_REJECTED: "Time series fully rejected",
    CimReason.TIME_SERIES_ACCEPTED_WITH_SPECIFIC_TIME_INTERVAL_ERRORS: (
        "Time series accepted with specific time interval errors"
    ),
    CimReason.IN_PARTY_OUT_PARTY_INVALID: "In party/Out party invalid",
    CimReason.AREA_INVALID: "Area invalid",
    CimReason.RESOLUTION_INCONSISTENCY: "Resolution inconsistency",
    CimReason.QUANTITY_INCONSISTENCY: "Quantity inconsistency",
    CimReason.QUANTITIES_MUST_NOT_BE_SIGNED_VALUES: "Quantities must not be signed values",
    CimReason.POSITION_INCONSISTENCY: "Position inconsistency",
    CimReason.SENDERS_TIME_SERIES_VERSION_CONFLICT: "Senders time series version conflict",
    CimReason.MESSAGE_IDENTIFICATION_OR_VERSION_CONFLICT: (
        "Message identification or version conflict"
    ),
    CimReason.RECEIVING_PARTY_INCORRECT: "Receiving party incorrect",
    CimReason.TIME_SERIES_IDENTIFICATION_CONFLICT: "Time series identification conflict",
    CimReason.DEADLINE_LIMIT_EXCEEDED_GATE_NOT_OPEN: "Deadline limit exceeded/Gate not open",
    CimReason.NOT_COMPLIANT_TO_LOCAL_MARKET_RULES: "Not compliant to local market rules",
    CimReason.CURRENCY_INVALID: "Currency invalid",
    CimReason.INVALID_BUSINESS_TYPE: "Invalid business type",
    CimReason.RESOURCE_OBJECT_INVALID: "Resource Object Invalid",
    CimReason.MANDATORY_ATTRIBUTES_MISSING: "Mandatory attributes missing",
    CimReason.SENDER_IDENTIFICATION_AND_OR_ROLE_INVALID: (
        "Sender identification and/or role invalid"
    ),
    CimReason.PROCESS_TYPE_INVALID: "Process type invalid",
    CimReason.DOMAIN_INVALID: "Domain invalid",
    CimReason.DOCUMENT_CANNOT_BE_PROCESSED_BY_RECEIVING_SYSTEM: (
        "Document cannot be processed by receiving system"
    ),
    CimReason.INCOMPLETE_DOCUMENT: "Incomplete document",
}


@dataclass(frozen=True, slots=True)
class InboundDocument:
    """What gridgate could read of a refused document, so that its acknowledgement can
    name it (`received_MarketDocument.*`) and be written in a matching version."""

    root: str | None = None  # the root element's local name
    namespace: str | None = None
    version: str | None = None  # set when the namespace is one gridgate accepts
    mrid: str | None = None
    revision: int | None = None
    type: str | None = None
    process_type: str | None = None
    created: str | None = None  # createdDateTime as written (it may be what is wrong)
    sender: str | None = None  # sender_MarketParticipant.mRID as written
    sender_coding_scheme: str | None = None
    sender_role: str | None = None


class CimRejection(Rejection):
    """A CIM document refused by gridgate: the acknowledgement reason code and what broke.

    `detail` leads with the rule (the document and version, or gridgate's profile) and names
    the element and its line; `element` is the element's path (`TimeSeries/Period/resolution`)
    and `line` its source line, when known. `time_series` is the mRID of the time series the
    fault is in, when it is in one. `inbound` is what was readable of the document.
    """

    reason: CimReason

    def __init__(
        self,
        reason: CimReason,
        detail: str,
        *,
        element: str | None = None,
        line: int | None = None,
        time_series: str | None = None,
        inbound: InboundDocument | None = None,
    ) -> None:
        super().__init__(reason, _clip(detail))
        self.element = element
        self.line = line
        self.time_series = time_series
        self.inbound = inbound or InboundDocument()

    @property
    def code(self) -> str:
        """The reason code written in the acknowledgement, e.g. "A41"."""
        return self.reason.value

    @property
    def text(self) -> str:
        """The acknowledgement Reason text: the code's name, then the detail (≤512)."""
        return _clip(f"{self.reason.standard_name}: {self.detail}")


def _clip(text: str) -> str:
    if len(text) <= REASON_TEXT_LIMIT:
        return text
    return text[: REASON_TEXT_LIMIT - 1] + "…"
