"""The typed catalogue of UFTP rejection reasons, and the HTTP status each one maps to.

A member's value is the wording of the Shapeshifter specification
(`docs/use-case-descriptions/message-validation.md`, NOTES §5) where the spec has one; the
members marked "gridgate" below are gridgate's own wording for rules the spec leaves to the
implementation. Peers word reasons differently, so nothing may match on the text of a
reason received from a peer: only on the members, for the reasons gridgate raises itself.

`STATUS` says how a rejection is answered: an HTTP status when the message is refused
synchronously (the transport layer: XML, XSD and signature failures, UFTP transport
appendix), or None when it is answered with a signed `...Response` with Result=Rejected.
"""

from __future__ import annotations

from gateway.errors import Reason, Rejection


class UftpReason(Reason):
    """Why gridgate rejects a UFTP message."""

    # --- envelope and addressing (spec wording)
    UNKNOWN_SENDER_DOMAIN = "Unknown SenderDomain"
    INVALID_SENDER_ROLE = "Invalid SenderRole"
    INVALID_SENDER_COMBINATION = "Invalid Sender combination"
    MISMATCH_SENDER_DOMAIN = "Mismatch SenderDomain"
    INVALID_SIGNED_MESSAGE = "Invalid SignedMessage"
    INVALID_MESSAGE = "Invalid Message"
    UNKNOWN_RECIPIENT_DOMAIN = "Unknown RecipientDomain"
    BARRED_SENDER = "Barred Sender"
    # the spec only says the CS1 signature check fails (HTTP 401); the wording is gridgate's
    BAD_SIGNATURE = "Invalid signature"
    # gridgate: the key lookup (address book / DNS) failed for now; HTTP 419 is temporary
    KEY_LOOKUP_FAILED = "Key lookup failed"
    # gridgate: the "Invalid Message" family, split by the defence that refused the message
    UNSUPPORTED_VERSION = "Invalid Message (unsupported Version)"
    SCHEMA_INVALID = "Invalid Message (XSD)"
    DTD_FORBIDDEN = "Invalid Message (DTD forbidden)"
    OVERSIZE = "Invalid Message (too large)"

    # --- identity (spec wording)
    DUPLICATE_IDENTIFIER = "Duplicate Identifier"
    ALREADY_SUBMITTED = "Already Submitted"

    # --- market parameters (spec wording)
    ISP_DURATION_REJECTED = "ISP duration rejected"
    TIMEZONE_REJECTED = "TimeZone rejected"
    INVALID_CONGESTION_POINT = "Invalid CongestionPoint"

    # --- references (spec wording; the spec names the attribute: "Unknown FlexOfferMessageID
    # reference", gridgate puts the attribute in the detail)
    UNKNOWN_REFERENCE = "Unknown reference"
    REFERENCE_PERIOD_MISMATCH = "Reference Period mismatch"
    REFERENCE_EXPIRED = "Reference message expired"
    REFERENCE_REVOKED = "Reference message revoked"

    # --- timing (spec wording)
    ISP_OUT_OF_BOUNDS = "ISPs out of bounds"
    ISP_CONFLICT = "ISP conflict"
    PERIOD_OUT_OF_BOUNDS = "Period out of bounds"
    EXPIRATION_OUT_OF_BOUNDS = "ExpirationDateTime out of bounds"

    # --- content rules of the spec prose, wording gridgate's
    OUTDATED_REVISION = "Revision out of sequence"
    ACTIVATION_FACTOR_TOO_LOW = "ActivationFactor below MinActivationFactor"
    MUTEX_OFFERS_NOT_SUPPORTED = "Multiple options not supported"
    # a FlexRequestMessageID/FlexOfferMessageID (or OptionReference) the message needs
    MISSING_REFERENCE = "Missing reference"
    # an offer is bought at most once, and an ordered offer cannot be revoked
    REFERENCE_ORDERED = "Reference message already ordered"
    # an order gridgate sent for another protocol's document is answered once
    REFERENCE_ANSWERED = "Reference message already answered"
    # a FlexOrder's ISPs, power and price are the offer option's
    ORDER_OFFER_MISMATCH = "FlexOrder does not match the FlexOffer"
    # gridgate could not deliver the message before it expired (told to its sender)
    UNDELIVERABLE = "Recipient unreachable"

    # --- gridgate's own grid and registration rules
    GRID_LIMIT_EXCEEDED = "Grid limit exceeded"
    UNAUTHORIZED_CONGESTION_POINT = "Unauthorized CongestionPoint"
    UNREGISTERED_RESOURCES = "Unregistered resources"
    NO_ROUTE = "No route to recipient"


R = UftpReason

# HTTP status for a synchronous answer (UFTP transport appendix, NOTES §4); None = answered by
# a signed business Response.
STATUS: dict[UftpReason, int | None] = {
    R.INVALID_SIGNED_MESSAGE: 400,
    R.INVALID_MESSAGE: 400,
    R.UNSUPPORTED_VERSION: 400,
    R.SCHEMA_INVALID: 400,
    R.DTD_FORBIDDEN: 400,
    R.OVERSIZE: 413,
    R.BAD_SIGNATURE: 401,
    R.UNKNOWN_SENDER_DOMAIN: 401,  # no key to check the signature with
    R.KEY_LOOKUP_FAILED: 419,
}


def status_for(reason: UftpReason) -> int | None:
    """Return the HTTP status `reason` is answered with, or None for a business Response."""
    return STATUS.get(reason)


def reject(reason: UftpReason, detail: str) -> Rejection:
    """Build the Rejection for `reason`, with the catalogue's HTTP status."""
    return Rejection(reason, detail, status=status_for(reason))
