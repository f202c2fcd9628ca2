"""UFTP message signing, scheme CS1: libsodium `crypto_sign` (Ed25519, combined mode).

The signed form is the 64-byte Ed25519 signature followed by the exact bytes of the inner
XML (UFTP transport appendix, NOTES §2). Ed25519 is deterministic, so `sign` here produces
byte for byte what libsodium's `crypto_sign` produces for the same key and message.

Key formats (JAVA `UftpKeyPairTool`, NOTES §2-3): the private key is the 64-byte libsodium
secret key (seed ‖ public key) in base64; the public key is 32 bytes in base64, or the DNS
form `cs1.` + base64(32-byte Ed25519 key ‖ 32-byte box key).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.uftp.rejections import UftpReason, reject

SIGNATURE_BYTES = 64
_SEED_BYTES = 32
_PUBLIC_BYTES = 32
_DNS_PREFIX = "cs1."


def sign(message: bytes, key: Ed25519PrivateKey) -> bytes:
    """Return `signature ‖ message`, libsodium's combined `crypto_sign` form."""
    return key.sign(message) + message


def open_signed(signed: bytes, keys: Sequence[Ed25519PublicKey]) -> bytes:
    """Verify `signature ‖ message` with any of `keys`; return the message.

    Two keys overlap while a sender rotates (NOTES §3). Raises a Rejection with reason
    BAD_SIGNATURE (HTTP 401) when the body is too short or no key verifies it.
    """
    if len(signed) < SIGNATURE_BYTES:
        raise reject(
            UftpReason.BAD_SIGNATURE,
            f"CS1: the signed body is {len(signed)} bytes, shorter than a "
            f"{SIGNATURE_BYTES}-byte signature",
        )
    if not keys:
        raise reject(UftpReason.BAD_SIGNATURE, "CS1: no public key to verify the signature with")
    signature, message = signed[:SIGNATURE_BYTES], signed[SIGNATURE_BYTES:]
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return message
    raise reject(
        UftpReason.BAD_SIGNATURE,
        f"CS1: the Ed25519 signature does not verify with the sender's "
        f"{len(keys)} public key{'s' if len(keys) != 1 else ''}",
    )


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"{what} is not valid base64: {e}") from None


def load_private_key(b64: str) -> Ed25519PrivateKey:
    """Load a base64 private key: the 64-byte libsodium secret key or a 32-byte seed."""
    raw = _b64decode(b64, "private key")
    if len(raw) == _SEED_BYTES:
        return Ed25519PrivateKey.from_private_bytes(raw)
    if len(raw) == _SEED_BYTES + _PUBLIC_BYTES:
        key = Ed25519PrivateKey.from_private_bytes(raw[:_SEED_BYTES])
        if _raw_public(key.public_key()) != raw[_SEED_BYTES:]:
            raise ValueError(
                "private key: the public half of the 64-byte libsodium secret key does not "
                "belong to its seed"
            )
        return key
    raise ValueError(
        f"private key: expected a 64-byte libsodium secret key or a 32-byte seed, "
        f"got {len(raw)} bytes"
    )


def load_public_key(b64: str) -> Ed25519PublicKey:
    """Load a base64 32-byte Ed25519 public key, or the DNS form `cs1.<base64>`."""
    text = b64.strip()
    if text.startswith(_DNS_PREFIX):
        raw = _b64decode(text[len(_DNS_PREFIX) :], "public key")
        # the DNS record holds the signing key, optionally followed by the box key
        if len(raw) not in (_PUBLIC_BYTES, 2 * _PUBLIC_BYTES):
            raise ValueError(f"public key: a cs1. key holds 32 or 64 bytes, got {len(raw)} bytes")
        raw = raw[:_PUBLIC_BYTES]
    else:
        raw = _b64decode(text, "public key")
        if len(raw) != _PUBLIC_BYTES:
            raise ValueError(f"public key: expected 32 bytes, got {len(raw)} bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_key_b64(key: Ed25519PrivateKey) -> str:
    """Return the key as base64 of the 64-byte libsodium secret key (seed ‖ public key)."""
    seed = key.private_bytes_raw()
    return base64.b64encode(seed + _raw_public(key.public_key())).decode("ascii")


def public_key_b64(key: Ed25519PublicKey) -> str:
    """Return the 32-byte public key in base64."""
    return base64.b64encode(_raw_public(key)).decode("ascii")


def generate_key_pair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    """Return a fresh Ed25519 key pair."""
    key = Ed25519PrivateKey.generate()
    return key, key.public_key()
