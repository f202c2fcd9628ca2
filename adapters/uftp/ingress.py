"""The UFTP codec the pipeline drives: open (envelope + signature), decode, render."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from adapters.uftp import codec, signing
from adapters.uftp.rejections import UftpReason, reject
from gateway.model import Message, Role
from gateway.pipeline import Opened
from gateway.routing import Directory


class UftpCodec:
    """Shapeshifter UFTP 3 over the CS1 scheme (libsodium crypto_sign, Ed25519)."""

    protocol = "uftp"

    def __init__(self, *, domain: str, signing_key: Ed25519PrivateKey, max_bytes: int) -> None:
        self.domain = domain
        self._key = signing_key
        self._max_bytes = max_bytes
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
        envelope = codec.parse_signed_message(raw, max_bytes=self._max_bytes)
        sender = directory.by_domain.get(envelope.sender_domain)
        if sender is None:
            raise reject(
                UftpReason.UNKNOWN_SENDER_DOMAIN,
                f"no participant has the UFTP domain {envelope.sender_domain}; "
                "its signature cannot be checked",
            )
        inner = signing.open_signed(envelope.body, self._keys(sender.public_keys))
        return Opened(sender=sender, sender_role=envelope.sender_role, inner=inner, raw=raw)

    def decode(self, opened: Opened) -> Message:
        return codec.decode(
            opened.inner,
            raw_digest="",
            sender_role=opened.sender_role,
            max_bytes=self._max_bytes,
        )

    def render(self, message: Message, *, sender_role: Role) -> bytes:
        signed = signing.sign(codec.encode(message), self._key)
        return codec.render_signed_message(self.domain, sender_role, signed)
