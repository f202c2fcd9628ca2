"""The UFTP rejection catalogue: spec wording, and the HTTP status of a synchronous answer."""

from __future__ import annotations

import pytest

from adapters.uftp.rejections import STATUS, UftpReason, reject, status_for
from gateway.errors import Reason, Rejection


def test_members_are_distinct_reasons() -> None:
    """An enum with a repeated value silently makes an alias; every member must be its own."""
    assert issubclass(UftpReason, Reason)
    assert len({m.value for m in UftpReason}) == len(UftpReason.__members__)


@pytest.mark.parametrize(
    ("member", "wording"),
    [
        (UftpReason.UNKNOWN_SENDER_DOMAIN, "Unknown SenderDomain"),
        (UftpReason.INVALID_SENDER_ROLE, "Invalid SenderRole"),
        (UftpReason.MISMATCH_SENDER_DOMAIN, "Mismatch SenderDomain"),
        (UftpReason.INVALID_SIGNED_MESSAGE, "Invalid SignedMessage"),
        (UftpReason.INVALID_MESSAGE, "Invalid Message"),
        (UftpReason.UNKNOWN_RECIPIENT_DOMAIN, "Unknown RecipientDomain"),
        (UftpReason.DUPLICATE_IDENTIFIER, "Duplicate Identifier"),
        (UftpReason.ALREADY_SUBMITTED, "Already Submitted"),
        (UftpReason.INVALID_CONGESTION_POINT, "Invalid CongestionPoint"),
        (UftpReason.ISP_OUT_OF_BOUNDS, "ISPs out of bounds"),
        (UftpReason.ISP_CONFLICT, "ISP conflict"),
        (UftpReason.PERIOD_OUT_OF_BOUNDS, "Period out of bounds"),
        (UftpReason.EXPIRATION_OUT_OF_BOUNDS, "ExpirationDateTime out of bounds"),
        (UftpReason.ISP_DURATION_REJECTED, "ISP duration rejected"),
        (UftpReason.TIMEZONE_REJECTED, "TimeZone rejected"),
    ],
)
def test_spec_wording(member: UftpReason, wording: str) -> None:
    """message-validation.md: the standard reasons, in the standard's words."""
    assert member.value == wording


@pytest.mark.parametrize(
    ("member", "status"),
    [
        (UftpReason.SCHEMA_INVALID, 400),
        (UftpReason.INVALID_SIGNED_MESSAGE, 400),
        (UftpReason.DTD_FORBIDDEN, 400),
        (UftpReason.UNSUPPORTED_VERSION, 400),
        (UftpReason.OVERSIZE, 413),
        (UftpReason.BAD_SIGNATURE, 401),
        (UftpReason.UNKNOWN_SENDER_DOMAIN, 401),
        (UftpReason.KEY_LOOKUP_FAILED, 419),
        (UftpReason.GRID_LIMIT_EXCEEDED, None),
        (UftpReason.DUPLICATE_IDENTIFIER, None),
        (UftpReason.MISMATCH_SENDER_DOMAIN, None),
    ],
)
def test_status(member: UftpReason, status: int | None) -> None:
    """UFTP transport appendix: 400 XML/XSD, 401 signature, 419 key lookup; business rules
    are answered by a signed Response (None)."""
    assert status_for(member) == status
    rejection = reject(member, "detail")
    assert isinstance(rejection, Rejection)
    assert rejection.reason is member
    assert rejection.status == status
    assert rejection.text == f"{member.value}: detail"


def test_only_transport_reasons_have_a_status() -> None:
    assert all(isinstance(s, int) and 400 <= s < 500 for s in STATUS.values())
