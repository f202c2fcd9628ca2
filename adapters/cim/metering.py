"""IEC 61968-9 MeterReadings from an LDC's meter data system → metering data (`Metering`).

The mapping table (docs/cim.md):

- MeterReading/UsagePoint/mRID → the connection's EAN (`ean.` + digits); the LDC may send
  readings only of connections behind its own congestion points. A reading naming only a
  Meter is refused: gridgate knows connections, not meters.
- IntervalBlocks/ReadingType@ref, the 18-field CIM reading-type code
  (macroPeriod.aggregate.measuringPeriod.accumulation.flowDirection.commodity.
  measurementKind. … .multiplier.unit.currency), decoded:

  - energy (measurementKind 12) in Wh (unit 72) as delta data (accumulation 4):
    flowDirection 1 (forward: delivered to the connection) → ImportEnergy (kWh),
    19 (reverse: received from it) → ExportEnergy (kWh);
  - the same as a register (accumulation 1 bulk or 3 cumulative) → ImportMeterReading /
    ExportMeterReading (kWh);
  - power (37) in W (38), flowDirection 1 (forward) or 4 (net) → Power (kW, import positive);

  with the multiplier (field 16: 0 none, 3 kilo, 6 mega) scaling the value to kWh or kW.
  The measuringPeriod (field 3) must be the market's ISP (2 = 15 minutes, 7 = 60 minutes,
  5 = 30 minutes); a cumulative register reading (measuringPeriod 0) is taken at the ISP
  its time stamp ends.
- IntervalReadings/timeStamp is the end of its interval → the ISP that ends then, in the
  local day (UFTP Period) that ISP starts in; one `Metering` per connection and day.
- Revision: one above the highest stored for that connection and day (gateway.references).

Each MeterReading is taken or refused whole; what is refused is named in the reply's
`Reply/Error` with the IEC 61968-100 code.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from adapters.cim.documents import MeterReading, MeterReadingsDocument, ReplyError
from gateway.model import Envelope, Metering, MeteringIsp, MeteringProfile, Role, period_bounds
from gateway.routing import Directory
from gateway.routing import Participant as GatewayParticipant

# IEC 61968-100 reply error codes
INVALID_DATA = "2.4"  # the data of the request is not valid
OBJECT_NOT_FOUND = "2.10"  # the object the request names does not exist
NOT_AUTHORIZED = "3.4"  # the sender may not change the object

# ReadingType fields (1-based positions in the 18-field code)
MEASURING_PERIOD = {2: timedelta(minutes=15), 5: timedelta(minutes=30), 7: timedelta(hours=1)}
NO_PERIOD = 0
DELTA_DATA = 4
REGISTERS = {1, 3}  # bulk quantity, cumulative
FORWARD, NET, REVERSE = 1, 4, 19
ENERGY, POWER = 12, 37
WATT_HOUR, WATT = 72, 38
MULTIPLIERS = {0: Decimal(1), 3: Decimal(1000), 6: Decimal(1_000_000)}


@dataclass(frozen=True, slots=True)
class ReadingType:
    """The fields of a CIM reading-type code gridgate reads."""

    measuring_period: int
    accumulation: int
    flow_direction: int
    measurement_kind: int
    multiplier: int
    unit: int

    @classmethod
    def decode(cls, code: str) -> ReadingType:
        fields = code.split(".")
        if len(fields) != 18 or not all(f.lstrip("-").isdigit() for f in fields):
            raise ValueError(
                f"ReadingType {code!r} is not an 18-field CIM reading-type code of integers"
            )
        n = [int(f) for f in fields]
        return cls(n[2], n[3], n[4], n[6], n[15], n[16])

    def profile(self) -> tuple[str, Decimal]:
        """The UFTP profile type and the factor from the readings' values to kWh or kW."""
        if self.multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier (field 16) {self.multiplier} is not 0, 3 or 6")
        scale = MULTIPLIERS[self.multiplier] / 1000  # to kilo
        if self.measurement_kind == ENERGY and self.unit == WATT_HOUR:
            if self.flow_direction not in (FORWARD, REVERSE):
                raise ValueError(
                    f"flowDirection (field 5) {self.flow_direction} of energy is not "
                    "1 (forward) or 19 (reverse)"
                )
            way = "Import" if self.flow_direction == FORWARD else "Export"
            if self.accumulation == DELTA_DATA:
                return f"{way}Energy", scale
            if self.accumulation in REGISTERS:
                return f"{way}MeterReading", scale
            raise ValueError(
                f"accumulation (field 4) {self.accumulation} of energy is not 4 (delta data), "
                "1 (bulk quantity) or 3 (cumulative)"
            )
        if self.measurement_kind == POWER and self.unit == WATT:
            if self.flow_direction not in (FORWARD, NET):
                raise ValueError(
                    f"flowDirection (field 5) {self.flow_direction} of power is not "
                    "1 (forward) or 4 (net)"
                )
            return "Power", scale
        raise ValueError(
            f"measurementKind (field 7) {self.measurement_kind} with unit (field 17) "
            f"{self.unit} is neither energy in Wh (12, 72) nor power in W (37, 38)"
        )


@dataclass(frozen=True, slots=True)
class MeteringMarket:
    isp: timedelta
    time_zone: str
    domain: str  # gridgate's UFTP domain: the recipient of the metering data


def metering_of(
    document: MeterReadingsDocument,
    origin: GatewayParticipant,
    directory: Directory,
    market: MeteringMarket,
    now: datetime,
) -> tuple[list[Metering], list[ReplyError]]:
    """Map the readings to Metering (Revision 0: the caller numbers them), one per
    connection and local day; return them and an error per refused MeterReading."""
    connections = _connections(directory)
    meterings: list[Metering] = []
    errors: list[ReplyError] = []
    for reading in document.meter_readings:
        try:
            meterings += _metering(reading, origin, connections, directory, market, now)
        except _Refused as refused:
            errors.append(ReplyError(refused.code, refused.text[:1024]))
    return meterings, errors


class _Refused(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


def _digits(ean: str) -> str:
    return ean.removeprefix("ean.")


def _connections(directory: Directory) -> dict[str, str]:
    """Connection EAN (digits) → the congestion point it lies behind."""
    return {
        _digits(resource.connection_ean): resource.congestion_point
        for agr in directory.participants.values()
        for resource in agr.resources
    }


def _metering(
    reading: MeterReading,
    origin: GatewayParticipant,
    connections: dict[str, str],
    directory: Directory,
    market: MeteringMarket,
    now: datetime,
) -> list[Metering]:
    named = reading.usage_point or reading.meter or "?"
    if reading.usage_point is None:
        raise _Refused(
            INVALID_DATA,
            f"MeterReading of Meter {named}: UsagePoint/mRID (the connection's EAN) is required",
        )
    ean = _digits(reading.usage_point)
    where = f"MeterReading of UsagePoint {reading.usage_point}"
    congestion_point = connections.get(ean)
    if congestion_point is None:
        raise _Refused(OBJECT_NOT_FOUND, f"{where}: no connection gridgate knows has this EAN")
    owner = directory.owner_of.get(congestion_point)
    if owner is None or owner.id != origin.id:
        raise _Refused(
            NOT_AUTHORIZED,
            f"{where}: the connection lies behind congestion point {congestion_point}, "
            f"which is not {origin.id}'s",
        )
    if not reading.interval_blocks:
        raise _Refused(INVALID_DATA, f"{where}: no IntervalBlocks")
    zone = ZoneInfo(market.time_zone)
    # (day, profile type) -> ISP -> value
    values: dict[date, dict[str, dict[int, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    for block in reading.interval_blocks:
        try:
            kind = ReadingType.decode(block.reading_type)
            profile, scale = kind.profile()
        except ValueError as e:
            raise _Refused(INVALID_DATA, f"{where}: {e}") from None
        if kind.measuring_period != NO_PERIOD and (
            MEASURING_PERIOD.get(kind.measuring_period) != market.isp
        ):
            raise _Refused(
                INVALID_DATA,
                f"{where}: ReadingType {block.reading_type}: measuringPeriod (field 3) "
                f"{kind.measuring_period} is not the market's ISP of "
                f"{int(market.isp.total_seconds() // 60)} minutes",
            )
        for interval in block.readings:
            start = interval.timestamp - market.isp
            day = start.astimezone(zone).date()
            day_start, _ = period_bounds(day, market.time_zone)
            offset = start - day_start
            if offset % market.isp:
                raise _Refused(
                    INVALID_DATA,
                    f"{where}: timeStamp {interval.timestamp.isoformat()} does not end an ISP",
                )
            isp = offset // market.isp + 1
            if isp in values[day][profile]:
                raise _Refused(
                    INVALID_DATA,
                    f"{where}: two {profile} readings end at {interval.timestamp.isoformat()}",
                )
            values[day][profile][isp] = interval.value * scale
    return [
        Metering(
            envelope=Envelope(
                message_id=str(uuid.uuid4()),
                conversation_id=str(uuid.uuid4()),
                sender_domain=f"cim:{origin.id}",
                recipient_domain=market.domain,
                sender_role=Role.DSO,
                timestamp=now,
                protocol="cim",
            ),
            revision=0,
            isp_duration=market.isp,
            time_zone=market.time_zone,
            period=day,
            ean=f"ean.{ean}",
            profiles=tuple(
                MeteringProfile(
                    profile,
                    "kW" if profile == "Power" else "kWh",
                    tuple(MeteringIsp(i, v) for i, v in sorted(isps.items())),
                )
                for profile, isps in sorted(by_profile.items())
            ),
        )
        for day, by_profile in sorted(values.items())
    ]


__all__ = ["MeteringMarket", "ReadingType", "metering_of"]
