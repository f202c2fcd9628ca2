"""Acknowledgements: every inbound document is answered, accepted (A01) or rejected (A02 plus
the specific code), in the version the rule picks (versions.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from adapters.cim.acknowledgements import acknowledgement, new_mrid
from adapters.cim.documents import CodedId, Participant, Reason, RejectedTimeSeries
from adapters.cim.emit import emit
from adapters.cim.parse import parse
from adapters.cim.reasons import CimRejection
from adapters.cim.versions import acknowledgement_version

from .examples import (
    BID_ID,
    GRIDGATE,
    ISO,
    ORDER_ID,
    activation,
    bid_availability,
    meter_readings,
    reserve_bid,
)
from .examples import (
    acknowledgement as example_acknowledgement,
)
from .official import official

NOW = datetime(2026, 11, 28, 9, 15, 0, 999, tzinfo=UTC)


def test_accepted_activation_is_acknowledged_a01_in_8_1() -> None:
    """451-1: a fully accepted document gets one Reason A01; an activation 6.2 is answered
    in 8.1 (the Nordic pairing, versions.py)."""
    order = activation("6.2")
    ack = acknowledgement(order, sender=GRIDGATE, created=NOW)
    assert ack.version == "8.1"
    assert ack.accepted
    assert ack.reasons == (Reason("A01", "Message fully accepted."),)
    assert ack.receiver == ISO
    assert ack.sender == GRIDGATE
    assert ack.created == NOW.replace(microsecond=0)
    assert ack.received.mrid == ORDER_ID
    assert ack.received.type == "A40"
    assert ack.received.process_type == "A47"
    assert ack.received.revision == 1
    assert ack.received.created == order.created
    assert len(ack.mrid) == 36


def test_partly_accepted_document_is_a03_with_rejected_time_series() -> None:
    rejected = RejectedTimeSeries(mrid=BID_ID, reasons=(Reason("A57", "gate closed"),))
    ack = acknowledgement(reserve_bid(), sender=GRIDGATE, rejected_time_series=[rejected])
    assert [r.code for r in ack.reasons] == ["A03"]
    assert ack.rejected_time_series == (rejected,)


def test_refused_document_is_a02_with_the_specific_code_and_the_series() -> None:
    """Statnett's practice: A02 at document level; the refused series in Rejected_TimeSeries."""
    faulty = emit(activation()).replace(b"<resolution>PT15M</resolution>", b"")
    with pytest.raises(CimRejection) as refused:
        parse(faulty)
    ack = acknowledgement(refused.value, sender=GRIDGATE, created=NOW)
    assert [r.code for r in ack.reasons] == ["A02", "A69"]
    assert ack.reasons[1].text == refused.value.text
    assert ack.reasons[1].text.startswith("Mandatory attributes missing: Activation_MarketDocument")
    assert ack.receiver == ISO  # read from the refused document
    assert ack.received.mrid == ORDER_ID
    assert ack.received.type == "A40"
    (series,) = ack.rejected_time_series
    assert series.mrid == BID_ID
    assert series.reasons == (ack.reasons[1],)
    assert not ack.accepted


def test_refusal_of_an_unreadable_document_needs_the_receiver() -> None:
    with pytest.raises(CimRejection) as refused:
        parse(b"<not-cim/>")
    with pytest.raises(ValueError, match="pass the receiver"):
        acknowledgement(refused.value, sender=GRIDGATE)
    ack = acknowledgement(refused.value, sender=GRIDGATE, receiver=ISO)
    assert [r.code for r in ack.reasons] == ["A02", "A94"]
    assert ack.received.mrid is None


@pytest.mark.parametrize("version", ["7.0", "8.1", "9.0"])
def test_acknowledgement_in_each_version_is_officially_valid(cim_specs: Path, version: str) -> None:
    """The acknowledgement of a refusal validates against the official 451-1 XSD of the
    configured version; 7.0 has no received process type and ≤35-character mRIDs."""
    faulty = emit(activation()).replace(b"<quantity>250</quantity>", b"<quantity>-250</quantity>")
    with pytest.raises(CimRejection) as refused:
        parse(faulty)
    ack = acknowledgement(refused.value, sender=GRIDGATE, version=version)
    assert ack.version == version
    if version == "7.0":
        assert ack.received.process_type is None
        assert len(ack.mrid) <= 35
        # the 36-character UUIDs: the received one in the title, the series in a reason
        assert ack.received.mrid is None
        assert ack.received.title == ORDER_ID
        assert ack.rejected_time_series == ()
        assert ack.reasons[-1].code == "A46"
        assert ack.reasons[-1].text.startswith(f"time series {BID_ID}: Quantities must")
    else:
        assert ack.received.mrid == ORDER_ID
        assert [s.mrid for s in ack.rejected_time_series] == [BID_ID]
    written = emit(ack)
    schema = official(cim_specs, "Acknowledgement_MarketDocument", version)
    assert schema.validate(etree.fromstring(written)), schema.error_log.last_error
    assert parse(written) == ack


def test_acknowledgement_version_rule() -> None:
    """8.1 for every inbound document unless the participant has a version configured."""
    assert acknowledgement_version("Activation_MarketDocument") == "8.1"
    assert acknowledgement_version("ReserveBid_MarketDocument") == "8.1"
    assert acknowledgement_version(None) == "8.1"
    assert acknowledgement_version("Activation_MarketDocument", "9.0") == "9.0"
    with pytest.raises(ValueError, match="not one of"):
        acknowledgement_version(None, "8.0")
    assert acknowledgement(bid_availability(), sender=GRIDGATE).version == "8.1"


def test_acknowledgements_and_meter_readings_are_not_acknowledged_in_esmp() -> None:
    with pytest.raises(ValueError, match="not acknowledged"):
        acknowledgement(example_acknowledgement(), sender=GRIDGATE)
    with pytest.raises(ValueError, match="61968-100"):
        acknowledgement(meter_readings(), sender=GRIDGATE)


def test_new_mrid_fits_the_version() -> None:
    assert len(new_mrid()) == 36
    assert len(new_mrid("7.0")) == 32


def test_sender_known_only_by_an_invalid_id_is_not_echoed() -> None:
    """An acknowledgement repeats only values that are valid in it: a sender id that is too
    long cannot be the receiver."""
    faulty = emit(activation()).replace(b"10X1001A1001A38Y", b"10X1001A1001A38Y-TOO-LONG", 1)
    with pytest.raises(CimRejection) as refused:
        parse(faulty)
    assert refused.value.code == "A78"
    with pytest.raises(ValueError, match="pass the receiver"):
        acknowledgement(refused.value, sender=GRIDGATE)
    other = Participant(CodedId("10X1001A1001A38Y", "A01"))
    assert acknowledgement(refused.value, sender=GRIDGATE, receiver=other).receiver == other
