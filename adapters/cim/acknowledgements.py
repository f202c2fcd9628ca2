"""Build the Acknowledgement_MarketDocument that answers an inbound document (sans-IO).

Every inbound ESMP document gets an acknowledgement (NOTES §3; Fingrid requires one per
message, so an activation gets an acknowledgement *and* later an A41 response):

- accepted: one Reason A01 "Message fully accepted";
- accepted but for some time series: A03, and a `Rejected_TimeSeries` per refused series;
- refused (`CimRejection`): A02 "Message fully rejected", then the specific code with the
  text naming the element and line; when the fault is in one time series, that series is
  also listed in `Rejected_TimeSeries` with the same reason (as Statnett's examples do).

The version follows `versions.acknowledgement_version`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from adapters.cim.documents import (
    AcknowledgementDocument,
    ActivationDocument,
    BidAvailabilityDocument,
    CimDocument,
    CodedId,
    MarketDocumentHeader,
    MeterReadingsDocument,
    Participant,
    Reason,
    ReceivedDocument,
    RejectedTimeSeries,
    ReserveAllocationResultDocument,
    ReserveBidDocument,
)
from adapters.cim.reasons import REASON_TEXT_LIMIT, CimReason, CimRejection, InboundDocument
from adapters.cim.values import parse_created
from adapters.cim.versions import (
    ACTIVATION,
    BID_AVAILABILITY,
    RESERVE_ALLOCATION_RESULT,
    RESERVE_BID,
    acknowledgement_version,
)

_ID_LIMIT_7_0 = 35  # ID_String of 451-1 7.0

_ROOTS: dict[type, str] = {
    ActivationDocument: ACTIVATION,
    ReserveBidDocument: RESERVE_BID,
    BidAvailabilityDocument: BID_AVAILABILITY,
    ReserveAllocationResultDocument: RESERVE_ALLOCATION_RESULT,
}


def new_mrid(version: str | None = None) -> str:
    """A fresh document mRID: a UUID, or its 32 hex digits for acknowledgement 7.0 (≤35)."""
    value = uuid.uuid4()
    return value.hex if version == "7.0" else str(value)


def acknowledgement(
    inbound: CimDocument | CimRejection,
    *,
    sender: Participant,
    receiver: Participant | None = None,
    version: str | None = None,
    created: datetime | None = None,
    mrid: str | None = None,
    rejected_time_series: Sequence[RejectedTimeSeries] = (),
) -> AcknowledgementDocument:
    """The acknowledgement of a parsed document (accepted) or of a refusal (rejected).

    `sender` is gridgate's own participant; `receiver` defaults to the inbound document's
    sender. `version` is the participant's configured acknowledgement version, if any.
    """
    if isinstance(inbound, MeterReadingsDocument):
        raise ValueError("a MeterReadings message is answered in IEC 61968-100, not ESMP")
    if isinstance(inbound, AcknowledgementDocument):
        raise ValueError("an acknowledgement is not acknowledged")
    root = inbound.inbound.root if isinstance(inbound, CimRejection) else _ROOTS[type(inbound)]
    chosen = acknowledgement_version(root, version)
    if isinstance(inbound, CimRejection):
        received, default_receiver = _received_of_refused(inbound.inbound)
        specific = Reason(inbound.code, inbound.text)
        reasons: tuple[Reason, ...] = (_reason(CimReason.MESSAGE_FULLY_REJECTED), specific)
        rejected = tuple(rejected_time_series)
        if inbound.time_series is not None:
            rejected += (RejectedTimeSeries(mrid=inbound.time_series, reasons=(specific,)),)
    else:
        received = _received_of(inbound)
        default_receiver = inbound.sender
        rejected = tuple(rejected_time_series)
        reasons = (
            _reason(CimReason.MESSAGE_CONTAINS_ERRORS_AT_THE_TIME_SERIES_LEVEL)
            if rejected
            else _reason(CimReason.MESSAGE_FULLY_ACCEPTED),
        )
    to = receiver or default_receiver
    if to is None:
        raise ValueError("the refused document names no sender: pass the receiver")
    if chosen == "7.0":
        received, reasons, rejected = _fit_7_0(received, reasons, rejected)
    return AcknowledgementDocument(
        version=chosen,
        mrid=mrid or new_mrid(chosen),
        created=(created or datetime.now(UTC)).replace(microsecond=0),
        sender=sender,
        receiver=to,
        received=received,
        reasons=reasons,
        rejected_time_series=rejected,
    )


def _fit_7_0(
    received: ReceivedDocument,
    reasons: tuple[Reason, ...],
    rejected: tuple[RejectedTimeSeries, ...],
) -> tuple[ReceivedDocument, tuple[Reason, ...], tuple[RejectedTimeSeries, ...]]:
    """451-1 7.0 has no received process type and mRIDs of at most 35 characters (a UUID
    has 36): a longer received mRID goes into `received_MarketDocument.title` (≤150, the
    received payload's identification), a longer rejected series is named in a reason."""
    long_id = received.mrid is not None and len(received.mrid) > _ID_LIMIT_7_0
    received = ReceivedDocument(
        mrid=None if long_id else received.mrid,
        revision=received.revision,
        type=received.type,
        title=received.mrid if long_id else received.title,
        created=received.created,
    )
    kept = tuple(series for series in rejected if len(series.mrid) <= _ID_LIMIT_7_0)
    for series in rejected:
        if len(series.mrid) > _ID_LIMIT_7_0:
            text = f"time series {series.mrid}: " + "; ".join(
                reason.text or reason.code for reason in series.reasons
            )
            reasons += (Reason(series.reasons[0].code if series.reasons else "999", _clip(text)),)
    return received, reasons, kept


def _reason(reason: CimReason) -> Reason:
    return Reason(reason.value, f"{reason.standard_name}.")


def _received_of(document: MarketDocumentHeader) -> ReceivedDocument:
    return ReceivedDocument(
        mrid=document.mrid,
        revision=document.revision,
        type=document.type,
        process_type=document.process_type,
        created=document.created,
    )


def _received_of_refused(inbound: InboundDocument) -> tuple[ReceivedDocument, Participant | None]:
    """What an acknowledgement can say of a refused document: only values that are valid."""
    created = None
    if inbound.created is not None:
        try:
            created = parse_created(inbound.created)
        except ValueError:
            created = None
    received = ReceivedDocument(
        mrid=_fits(inbound.mrid, 60),
        revision=inbound.revision if inbound.revision and 0 < inbound.revision < 1000 else None,
        type=inbound.type if _is_code(inbound.type) else None,
        process_type=inbound.process_type if _is_code(inbound.process_type) else None,
        created=created,
    )
    sender = None
    if inbound.sender and inbound.sender_coding_scheme and len(inbound.sender) <= 16:
        sender = Participant(
            CodedId(inbound.sender, inbound.sender_coding_scheme),
            inbound.sender_role if _is_code(inbound.sender_role) else None,
        )
    return received, sender


def _clip(text: str) -> str:
    return text if len(text) <= REASON_TEXT_LIMIT else text[: REASON_TEXT_LIMIT - 1] + "…"


def _fits(value: str | None, limit: int) -> str | None:
    return value if value is not None and 0 < len(value) <= limit else None


def _is_code(value: str | None) -> bool:
    return value is not None and len(value) == 3 and value[0].isalpha() and value[1:].isdigit()
