"""The tamper-evident audit log: a hash chain over every message, decision and delivery."""

from gateway.audit.chain import GENESIS, AuditDraft, VerifyReport, entry_hash, verify_chain

__all__ = ["GENESIS", "AuditDraft", "VerifyReport", "entry_hash", "verify_chain"]
