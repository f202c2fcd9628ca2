"""The error tree: deliberate rejections carry a typed reason; everything else is a bug."""

from __future__ import annotations

import enum


class GridgateError(Exception):
    """Base of every error gridgate raises on purpose."""


class ConfigError(GridgateError):
    """An operator config file is wrong; the message names the file, the key and the rule."""


class Reason(enum.StrEnum):
    """Base for each protocol's typed catalogue of rejection reasons.

    A member's value is the wording the protocol's spec uses; the catalogue also says which
    HTTP status the rejection maps to when it is answered synchronously.
    """


class Rejection(GridgateError):
    """A deliberate rejection of an inbound message.

    `reason` is a member of a protocol catalogue (its value is the spec wording), `detail`
    says what exactly broke the rule. `status` is the HTTP status when the rejection is
    answered synchronously (the transport layer), or None when it is answered with a
    business response (a signed `...Response` with Result=Rejected).
    """

    def __init__(self, reason: Reason, detail: str, *, status: int | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.status = status
        super().__init__(f"{reason.value}: {detail}")

    @property
    def text(self) -> str:
        """The rejection as the sender reads it: the rule first, then the detail."""
        return f"{self.reason.value}: {self.detail}"


class TemporaryDeliveryError(GridgateError):
    """A delivery attempt failed in a way worth retrying (peer down, 5xx, timeout)."""


class PermanentDeliveryError(GridgateError):
    """A delivery attempt failed for good (the peer refused the content)."""
