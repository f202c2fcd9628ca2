"""The emitter refuses what a version cannot carry instead of dropping it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from adapters.cim.documents import Participant, TimeInterval
from adapters.cim.emit import CimEmitError, emit

from .examples import (
    DSO,
    acknowledgement,
    activation,
    meter_readings,
    reserve_bid,
)


def test_6_4_fields_in_6_2_are_refused() -> None:
    series = dataclasses.replace(activation("6.2").time_series[0], related_party=DSO)
    document = dataclasses.replace(activation("6.2"), time_series=(series,))
    with pytest.raises(CimEmitError, match=r"Activation_MarketDocument 6\.2 cannot carry related"):
        emit(document)


def test_version_gridgate_does_not_write_is_refused() -> None:
    with pytest.raises(CimEmitError, match=r"'6\.3' is not one gridgate writes"):
        emit(dataclasses.replace(activation(), version="6.3"))


def test_inclusive_bids_need_7_4_and_curve_type_7_6() -> None:
    bids = reserve_bid("7.4")
    with pytest.raises(CimEmitError, match="inclusiveBidsIdentification"):
        emit(dataclasses.replace(bids, version="7.2"))
    bid = dataclasses.replace(bids.bid_time_series[1], curve_type="A01")
    with pytest.raises(CimEmitError, match="curveType"):
        emit(dataclasses.replace(bids, bid_time_series=(bid,)))


def test_acknowledgement_7_0_limits() -> None:
    """451-1 7.0: mRIDs of at most 35 characters, no received process type."""
    ack = acknowledgement("8.1")
    with pytest.raises(CimEmitError, match=r"process\.processType"):
        emit(dataclasses.replace(ack, version="7.0"))
    no_process = dataclasses.replace(
        ack, version="7.0", received=dataclasses.replace(ack.received, process_type=None)
    )
    with pytest.raises(CimEmitError, match="36-character mRID"):
        emit(no_process)


def test_9_0_elements_in_8_1_are_refused() -> None:
    with pytest.raises(CimEmitError, match=r"9\.0 only"):
        emit(dataclasses.replace(acknowledgement("9.0"), version="8.1"))


def test_acknowledgement_needs_a_reason() -> None:
    with pytest.raises(CimEmitError, match="without a Reason"):
        emit(dataclasses.replace(acknowledgement(), reasons=()))


def test_interval_with_seconds_is_refused_created_is_truncated() -> None:
    """ESMP intervals are whole minutes; createdDateTime is written to the second."""
    document = activation()
    odd = TimeInterval(document.period.start + timedelta(seconds=30), document.period.end)
    with pytest.raises(CimEmitError, match="not on a whole minute"):
        emit(dataclasses.replace(document, period=odd))
    written = emit(dataclasses.replace(document, created=document.created.replace(microsecond=5)))
    assert b"<createdDateTime>2026-11-28T09:14:13Z</createdDateTime>" in written


def test_naive_date_time_is_refused() -> None:
    with pytest.raises(CimEmitError, match="no time zone"):
        emit(dataclasses.replace(activation(), created=datetime(2026, 11, 28, 9, 0)))


def test_what_gridgate_would_refuse_is_not_sent() -> None:
    """The emitter checks its output against gridgate's own profile."""
    series = dataclasses.replace(activation().time_series[0], unit="MWH")
    with pytest.raises(CimEmitError, match="gridgate would refuse what it wrote"):
        emit(dataclasses.replace(activation(), time_series=(series,)))
    no_role = dataclasses.replace(activation(), sender=Participant(activation().sender.mrid))
    with pytest.raises(CimEmitError, match=r"marketRole\.type"):
        emit(no_role)


def test_meter_readings_verb_and_reply() -> None:
    with pytest.raises(CimEmitError, match="verb 'get'"):
        emit(dataclasses.replace(meter_readings(), verb="get"))
    with pytest.raises(CimEmitError, match="Reply/Result"):
        emit(dataclasses.replace(meter_readings("reply"), reply_result=None))
    assert b"2026-11-28T06:00:00.125000Z" in emit(meter_readings())
    assert emit(meter_readings()).count(b"<m:MeterReading>") == 2
    assert UTC  # the example's timestamps are UTC
