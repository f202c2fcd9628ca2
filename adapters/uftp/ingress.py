"""The UFTP codec the pipeline drives: open (envelope + signature), decode, render."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from adapters.uftp import codec, signing
from adapters.uftp.discovery import DiscoveryError, key_record_name
from adapters.uftp.rejections import UftpReason, reject
from gateway.errors import Rejection
from gateway.model import Message, Role
from gateway.pipeline import Opened
from gateway.routing import Directory, Participant

if TYPE_CHECKING:
    from adapters.uftp.codec import SignedEnvelope
    from adapters.uftp.discovery import Discovery


class UftpCodec:
    """Shapeshifter UFTP 3 over the CS1 scheme (libsodium crypto_sign, Ed25519).

    A sender's keys come from the operator config, or for a participant found by DNS from
    `discovery`. Its lookups are temporary failures (UFTP transport appendix): a sender whose
    keys cannot be looked up is answered 419 (KEY_LOOKUP_FAILED), and so is a signature that
    fails with keys old enough that the sender may have rotated since, while they are looked
    up again. `open` never waits for DNS; `open_with_lookup` waits for that one lookup.
    """

    protocol = "uftp"

    def __init__(
        self,
        *,
        domain: str,
        signing_key: Ed25519PrivateKey,
        max_bytes: int,
        discovery: Discovery | None = None,
    ) -> None:
        self.domain = domain
        self._key = signing_key
        self._max_bytes = max_bytes
        self.discovery = discovery
        self._public: dict[bytes, Ed25519PublicKey] = {}

    def _keys(self, raw_keys: tuple[bytes, ...]) -> list[Ed25519PublicKey]:
        out = []
        for raw in raw_keys:
            key = self._public.get(raw)
            if key is None:
                key = self._public[raw] = Ed25519PublicKey.from_public_bytes(raw)
            out.append(key)
        return out

    def open(self, raw: bytes, directory: Directory) -> Opened:
        envelope, sender = self._envelope(raw, directory)
        if not sender.found_by_dns:
            return self._verify(raw, envelope, sender, sender.public_keys)
        discovery = self._discovery(sender)
        try:
            keys = discovery.keys(envelope.sender_domain)
        except DiscoveryError as e:
            raise self._lookup_failed(sender, e) from e
        try:
            return self._verify(raw, envelope, sender, keys)
        except Rejection as rejection:
            if self._may_have_rotated(envelope, rejection) and discovery.recheck_soon(
                envelope.sender_domain
            ):
                raise reject(
                    UftpReason.KEY_LOOKUP_FAILED,
                    f"the signature of {sender.id} does not verify with the keys published at "
                    f"{key_record_name(envelope.sender_domain, sender.role)}; they are being "
                    "looked up again (send again later)",
                ) from rejection
            raise

    async def open_with_lookup(self, raw: bytes, directory: Directory) -> Opened:
        """Like `open`, but first wait for the sender's key lookup when one is due.

        A signature that fails with keys older than the discovery's `recheck_seconds` makes
        it look them up once more and verify again before it answers 401.
        """
        envelope, sender = self._envelope(raw, directory)
        if not sender.found_by_dns:
            return self._verify(raw, envelope, sender, sender.public_keys)
        discovery, domain = self._discovery(sender), envelope.sender_domain
        try:
            records = await discovery.ensure(domain)
        except DiscoveryError as e:
            raise self._lookup_failed(sender, e) from e
        try:
            return self._verify(raw, envelope, sender, records.keys)
        except Rejection as rejection:
            if not self._may_have_rotated(envelope, rejection):
                raise
            try:
                looked_up = await discovery.recheck(domain)
            except DiscoveryError as e:
                raise self._lookup_failed(sender, e) from rejection
            if not looked_up:
                raise
            return self._verify(raw, envelope, sender, discovery.keys(domain))

    def _envelope(self, raw: bytes, directory: Directory) -> tuple[SignedEnvelope, Participant]:
        envelope = codec.parse_signed_message(raw, max_bytes=self._max_bytes)
        sender = directory.by_domain.get(envelope.sender_domain)
        if sender is None:
            raise reject(
                UftpReason.UNKNOWN_SENDER_DOMAIN,
                f"no participant has the UFTP domain {envelope.sender_domain}; "
                "its signature cannot be checked",
            )
        return envelope, sender

    def _verify(
        self, raw: bytes, envelope: SignedEnvelope, sender: Participant, keys: tuple[bytes, ...]
    ) -> Opened:
        inner = signing.open_signed(envelope.body, self._keys(keys))
        return Opened(sender=sender, sender_role=envelope.sender_role, inner=inner, raw=raw)

    def _discovery(self, sender: Participant) -> Discovery:
        if self.discovery is None:
            raise reject(
                UftpReason.KEY_LOOKUP_FAILED,
                f"{sender.id} is found by DNS, but the UFTP adapter runs without discovery",
            )
        return self.discovery

    @staticmethod
    def _may_have_rotated(envelope: SignedEnvelope, rejection: Rejection) -> bool:
        """A well-formed signature that no cached key verifies: the sender may have rotated."""
        return (
            rejection.reason is UftpReason.BAD_SIGNATURE
            and len(envelope.body) >= signing.SIGNATURE_BYTES
        )

    @staticmethod
    def _lookup_failed(sender: Participant, error: DiscoveryError) -> Rejection:
        return reject(UftpReason.KEY_LOOKUP_FAILED, f"the keys of {sender.id}: {error}")

    def decode(self, opened: Opened) -> Message:
        return codec.decode(
            opened.inner,
            raw_digest="",
            sender_role=opened.sender_role,
            max_bytes=self._max_bytes,
        )

    def reread(self, raw: bytes) -> Message:
        """Decode a message from the envelope it was accepted as (the audit log's body).

        Its signature was checked when it arrived and the audit chain holds the bytes since:
        it is not checked again, as the sender may have rotated its key since.
        """
        envelope = codec.parse_signed_message(raw, max_bytes=self._max_bytes)
        inner = envelope.body[signing.SIGNATURE_BYTES :]
        return codec.decode(
            inner,
            raw_digest=hashlib.sha256(inner).hexdigest(),  # as the pipeline's verify step
            sender_role=envelope.sender_role,
            max_bytes=self._max_bytes,
        )

    def render(self, message: Message, *, sender_role: Role) -> bytes:
        signed = signing.sign(codec.encode(message), self._key)
        return codec.render_signed_message(self.domain, sender_role, signed)
