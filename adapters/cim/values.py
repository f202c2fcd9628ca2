"""The lexical forms of ESMP values: the two date-time forms, durations, decimals, indicators.

ESMP writes `createdDateTime` as `YYYY-MM-DDThh:mm:ssZ` and a `timeInterval`'s start and
end as `YYYY-MM-DDThh:mmZ`, both UTC (NOTES §2). Resolutions and constraint durations are
`xs:duration`s; gridgate takes those of fixed length (days, hours, minutes, seconds).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

_DURATION = re.compile(
    r"P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?",
    re.ASCII,
)
_INTERVAL_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::00)?Z", re.ASCII)
_CREATED_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z", re.ASCII)


def parse_created(text: str) -> datetime:
    """Read a `createdDateTime` (`YYYY-MM-DDThh:mm:ssZ`); ValueError if it is not one."""
    match = _CREATED_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not YYYY-MM-DDThh:mm:ssZ")
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def parse_interval_time(text: str) -> datetime:
    """Read a `timeInterval` start or end (`YYYY-MM-DDThh:mmZ`); ValueError if not one."""
    match = _INTERVAL_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not YYYY-MM-DDThh:mmZ")
    year, month, day, hour, minute = (int(part) for part in match.groups())
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def parse_zoned(text: str) -> datetime:
    """Read an `xs:dateTime` with a UTC offset (IEC 61968) as UTC; ValueError otherwise."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return value.astimezone(UTC)


def format_created(value: datetime) -> str:
    """Write a `createdDateTime`: UTC, to the second (a fraction is dropped)."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_interval_time(value: datetime) -> str:
    """Write a `timeInterval` start or end: UTC, to the minute; ValueError if it has seconds."""
    utc = _utc(value)
    if utc.second or utc.microsecond:
        raise ValueError(f"{value.isoformat()} is not on a whole minute (ESMP intervals are hh:mm)")
    return utc.strftime("%Y-%m-%dT%H:%MZ")


def format_zoned(value: datetime) -> str:
    """Write an IEC 61968 `xs:dateTime` in UTC with a `Z`."""
    return _utc(value).isoformat().replace("+00:00", "Z")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no time zone; CIM date-times are UTC")
    return value.astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    """Read an `xs:duration` of fixed length (`PT15M`, `PT60M`, `P1D`); ValueError otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None or text in {"P", "PT"} or text.endswith("T"):
        raise ValueError(f"{text!r} is not a duration of days, hours, minutes and seconds")
    parts = {name: int(value) for name, value in match.groupdict().items() if value is not None}
    return timedelta(**parts)


def format_duration(value: timedelta) -> str:
    """Write a duration as ESMP practice does: whole minutes as `PTnM` (PT15M, PT60M), whole
    days as `PnD`, anything else in seconds."""
    seconds = int(value.total_seconds())
    if seconds <= 0 or value != timedelta(seconds=seconds):
        raise ValueError(f"{value} is not a positive whole number of seconds")
    if seconds % 86400 == 0:
        return f"P{seconds // 86400}D"
    if seconds % 60 == 0:
        return f"PT{seconds // 60}M"
    return f"PT{seconds}S"


def format_decimal(value: Decimal) -> str:
    """Write an `xs:decimal` (no exponent, as written otherwise: 10.000 stays 10.000)."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite decimal")
    return format(value, "f")


def parse_indicator(text: str) -> bool:
    """Read an ESMPBoolean: A01 yes, A02 no."""
    return text == "A01"


def format_indicator(value: bool) -> str:
    return "A01" if value else "A02"
