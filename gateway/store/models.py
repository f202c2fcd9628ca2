"""The tables. Each table has one owner module that writes it (named in its docstring)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Double,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite keeps naive UTC text, sorted right)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("gridgate stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class MessageRecord(Base):
    """Every inbound message gridgate accepted for processing (owner: gateway.pipeline).

    The unique key is the UFTP rule: MessageID is unique per (MessageID, SenderDomain,
    RecipientDomain); the digest of the raw bytes tells a resubmission from a reuse.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("message_id", "sender_domain", "recipient_domain", name="uq_message"),
        Index("ix_messages_reference", "reference"),
        Index("ix_messages_revision", "kind", "sender_domain", "subject", "period"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    protocol: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64))
    sender_domain: Mapped[str] = mapped_column(String(255))
    recipient_domain: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    decision: Mapped[str] = mapped_column(String(16))
    audit_seq: Mapped[int] = mapped_column(BigInteger)
    # what the cross-message rules look up (gateway.references): the MessageID this message
    # refers to, what it is about (congestion point or EAN) and for which Period, its
    # Revision, and when it stops being valid (ExpirationDateTime)
    reference: Mapped[str | None] = mapped_column(String(255), default=None)
    # an ea1. EntityAddress may run to ~500 characters: no length limit
    subject: Mapped[str | None] = mapped_column(Text, default=None)
    period: Mapped[date | None] = mapped_column(Date, default=None)
    revision: Mapped[int | None] = mapped_column(BigInteger, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class AuditEntry(Base):
    """The tamper-evident log (owner: gateway.audit). Each row carries the previous hash."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UtcDateTime())
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(String(64))
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON
    body_digest: Mapped[str | None] = mapped_column(String(64))
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain head: one row, locked by each appending transaction (owner: gateway.audit)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class OutboxEntry(Base):
    """Store-and-forward delivery (owner: gateway.outbox)."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_order", "ordering_key", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))  # "uftp" | "mqtt"
    destination: Mapped[str] = mapped_column(String(1024))  # URL or topic
    recipient: Mapped[str] = mapped_column(String(255))  # participant id
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    message_id: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64))
    # entries with the same key are delivered one at a time, in id order
    ordering_key: Mapped[str] = mapped_column(String(1200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | expired | failed
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class LedgerEntry(Base):
    """Accepted order power per congestion point and ISP (owner: gateway.gridcheck).

    Each row is a reservation of an accepted order, or its opposite when the order is
    given back; an order is (origin, order_message_id, recipient_domain).
    """

    __tablename__ = "ledger"
    __table_args__ = (Index("ix_ledger_cp_period", "congestion_point", "period"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    congestion_point: Mapped[str] = mapped_column(Text)  # an ea1. address runs to ~500
    period: Mapped[date] = mapped_column(Date)
    isp: Mapped[int] = mapped_column(Integer)
    power: Mapped[int] = mapped_column(BigInteger)
    order_message_id: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(255))
    # the UFTP domain the order went to: UFTP keys a message by (MessageID, sender,
    # recipient), so one MessageID may order two aggregators (NULL: a row of before 0004)
    recipient_domain: Mapped[str | None] = mapped_column(String(255), default=None)


class TemporaryLimitRecord(Base):
    """Temporary TSO-DSO interface limits a DSO set (owner: gateway.gridcheck).

    One row per limit, written in the transaction of the audit entry that records it (the
    operator API's `gridcheck.temporary_limit.set`, a Capacity_MarketDocument's
    `document.accepted`) and cleared the same way; the limits not cleared that have not
    ended are put back in force at start-up under their own ids. A limit from a capacity
    document names it by its sender (`set_by`), mRID and revision.
    """

    __tablename__ = "temporary_limits"
    __table_args__ = (Index("ix_temporary_limits_ends_at", "ends_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    zone: Mapped[str] = mapped_column(String(255))
    interface_limit_w: Mapped[float] = mapped_column(Double)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime())
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # "api" | "cim"
    set_by: Mapped[str] = mapped_column(String(255))  # participant id
    document_mrid: Mapped[str | None] = mapped_column(String(255), default=None)
    document_revision: Mapped[int | None] = mapped_column(Integer, default=None)
    set_at: Mapped[datetime] = mapped_column(UtcDateTime())
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
