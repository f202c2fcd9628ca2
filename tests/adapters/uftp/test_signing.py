"""CS1 signing: libsodium crypto_sign combined mode, done with `cryptography`'s Ed25519."""

from __future__ import annotations

import base64

import nacl.bindings
import nacl.signing
import pytest
from shapeshifter_uftp import transport as peer_transport
from shapeshifter_uftp.uftp import TestMessage as PeerTestMessage

from adapters.uftp import signing
from adapters.uftp.rejections import UftpReason
from gateway.errors import Rejection

XML = b'<?xml version="1.0" encoding="UTF-8"?><TestMessage Version="3.1.0"/>'


def test_round_trip() -> None:
    key, public = signing.generate_key_pair()
    signed = signing.sign(XML, key)
    assert len(signed) == 64 + len(XML)
    assert signed[64:] == XML
    assert signing.open_signed(signed, [public]) == XML


@pytest.mark.parametrize("index", [0, 31, 63, 64, -1])
def test_one_tampered_byte_is_rejected_with_401(index: int) -> None:
    key, public = signing.generate_key_pair()
    signed = bytearray(signing.sign(XML, key))
    signed[index] ^= 0x01
    with pytest.raises(Rejection) as e:
        signing.open_signed(bytes(signed), [public])
    assert e.value.reason is UftpReason.BAD_SIGNATURE
    assert e.value.status == 401


def test_wrong_key_is_rejected() -> None:
    key, _ = signing.generate_key_pair()
    _, other = signing.generate_key_pair()
    with pytest.raises(Rejection) as e:
        signing.open_signed(signing.sign(XML, key), [other])
    assert e.value.reason is UftpReason.BAD_SIGNATURE
    assert e.value.status == 401


def test_shorter_than_a_signature_is_rejected() -> None:
    _, public = signing.generate_key_pair()
    with pytest.raises(Rejection) as e:
        signing.open_signed(b"x" * 63, [public])
    assert e.value.reason is UftpReason.BAD_SIGNATURE
    assert "63 bytes" in e.value.detail


def test_no_keys_is_rejected() -> None:
    key, _ = signing.generate_key_pair()
    with pytest.raises(Rejection) as e:
        signing.open_signed(signing.sign(XML, key), [])
    assert e.value.status == 401


def test_either_of_two_keys_opens_during_rotation() -> None:
    old, old_public = signing.generate_key_pair()
    new, new_public = signing.generate_key_pair()
    keys = [old_public, new_public]
    assert signing.open_signed(signing.sign(XML, old), keys) == XML
    assert signing.open_signed(signing.sign(XML, new), keys) == XML
    third, _ = signing.generate_key_pair()
    with pytest.raises(Rejection):
        signing.open_signed(signing.sign(XML, third), keys)


def test_key_text_round_trip() -> None:
    key, public = signing.generate_key_pair()
    text = signing.private_key_b64(key)
    assert len(base64.b64decode(text)) == 64
    loaded = signing.load_private_key(text)
    assert signing.public_key_b64(loaded.public_key()) == signing.public_key_b64(public)
    assert signing.sign(XML, loaded) == signing.sign(XML, key)
    assert (
        signing.load_public_key(signing.public_key_b64(public)).verify(
            signing.sign(XML, key)[:64], XML
        )
        is None
    )


def test_32_byte_seed_loads() -> None:
    key, _ = signing.generate_key_pair()
    seed = base64.b64decode(signing.private_key_b64(key))[:32]
    loaded = signing.load_private_key(base64.b64encode(seed).decode())
    assert signing.private_key_b64(loaded) == signing.private_key_b64(key)


def test_64_byte_key_with_a_foreign_public_half_is_refused() -> None:
    a, _ = signing.generate_key_pair()
    b, _ = signing.generate_key_pair()
    raw_a = base64.b64decode(signing.private_key_b64(a))
    raw_b = base64.b64decode(signing.private_key_b64(b))
    with pytest.raises(ValueError, match="does not belong"):
        signing.load_private_key(base64.b64encode(raw_a[:32] + raw_b[32:]).decode())


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"x" * 48).decode(), ""])
def test_bad_private_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="private key"):
        signing.load_private_key(text)


def test_cs1_dns_public_key_forms_load() -> None:
    """NOTES §3: `cs1.` + base64(32-byte Ed25519 key ‖ 32-byte box key); PY also takes 32 B."""
    key, public = signing.generate_key_pair()
    raw = base64.b64decode(signing.public_key_b64(public))
    box = bytes(range(32))
    for text in (
        "cs1." + base64.b64encode(raw + box).decode(),
        "cs1." + base64.b64encode(raw).decode(),
    ):
        loaded = signing.load_public_key(text)
        assert signing.open_signed(signing.sign(XML, key), [loaded]) == XML


@pytest.mark.parametrize(
    "text", [base64.b64encode(b"x" * 31).decode(), "cs1." + base64.b64encode(b"x" * 48).decode()]
)
def test_bad_public_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="public key"):
        signing.load_public_key(text)


# --- interop with libsodium (PyNaCl) and shapeshifter-uftp --------------------------------------


def test_libsodium_signed_opens_with_ours() -> None:
    nacl_key = nacl.signing.SigningKey.generate()
    secret = bytes(nacl_key) + bytes(nacl_key.verify_key)  # the 64-byte libsodium secret key
    signed = nacl.bindings.crypto_sign(XML, secret)
    public = signing.load_public_key(base64.b64encode(bytes(nacl_key.verify_key)).decode())
    assert signing.open_signed(signed, [public]) == XML


def test_ours_open_with_libsodium_and_match_byte_for_byte() -> None:
    key, public = signing.generate_key_pair()
    signed = signing.sign(XML, key)
    raw_public = base64.b64decode(signing.public_key_b64(public))
    assert nacl.bindings.crypto_sign_open(signed, raw_public) == XML
    # Ed25519 is deterministic: libsodium with the same secret key gives the same bytes
    secret = base64.b64decode(signing.private_key_b64(key))
    assert nacl.bindings.crypto_sign(XML, secret) == signed


def test_libsodium_secret_key_loads() -> None:
    public_raw, secret_raw = nacl.bindings.crypto_sign_keypair()
    key = signing.load_private_key(base64.b64encode(secret_raw).decode())
    assert signing.public_key_b64(key.public_key()) == base64.b64encode(public_raw).decode()
    assert nacl.bindings.crypto_sign_open(signing.sign(XML, key), public_raw) == XML


def test_shapeshifter_uftp_seal_and_unseal_interoperate() -> None:
    """shapeshifter-uftp's own seal_message/unseal_message against ours, both directions."""
    key, public = signing.generate_key_pair()
    message = PeerTestMessage(
        sender_domain="agr.example.com",
        recipient_domain="dso.example.com",
        time_stamp="2026-11-27T10:00:00+00:00",
        message_id="5acd2197-d37d-4fd1-81ad-5c7e1a6f4d56",
        conversation_id="3eab0f75-b15b-4dbf-af8b-3a5c9e4d2b34",
    )
    sealed = peer_transport.seal_message(message, signing.private_key_b64(key))
    inner = signing.open_signed(sealed, [public])
    assert b"<TestMessage" in inner
    assert b'MessageID="5acd2197-d37d-4fd1-81ad-5c7e1a6f4d56"' in inner

    ours = signing.sign(inner, key)
    unsealed = peer_transport.unseal_message(ours, signing.public_key_b64(public))
    assert isinstance(unsealed, PeerTestMessage)
    assert unsealed.message_id == "5acd2197-d37d-4fd1-81ad-5c7e1a6f4d56"
