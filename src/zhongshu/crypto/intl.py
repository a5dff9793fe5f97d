"""The international suite: Ed25519 (RFC 8032), SHA-256, AES-128-GCM."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_core_ed25519_is_valid_point

from zhongshu.crypto.suite import DecryptionFailed, InvalidKey, PrivateKey, Suite


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@functools.lru_cache(maxsize=4096)
def _is_valid_point(raw: bytes) -> bool:
    return bool(crypto_core_ed25519_is_valid_point(raw))


@functools.lru_cache(maxsize=4096)
def _ed_public_key(raw: bytes) -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


class Ed25519PrivateKey(PrivateKey):
    def __init__(self, suite: IntlSuite, key: ed25519.Ed25519PrivateKey) -> None:
        self.suite = suite
        self._key = key
        self._public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_bytes(self) -> bytes:
        return self._public

    def encode_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


class IntlSuite(Suite):
    name = "intl"
    hash_name = "SHA-256"
    signature_name = "Ed25519 (RFC 8032)"
    public_key_size = 32
    aead_key_size = 16

    def hash(self, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def hasher(self) -> Callable[[bytes], bytes]:
        return sha256

    def generate_private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey(self, ed25519.Ed25519PrivateKey.generate())

    def load_private_key_pem(self, pem: bytes) -> Ed25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, None)
        except Exception as exc:
            raise InvalidKey(f"not a PKCS#8 PEM private key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise InvalidKey("the PEM key is not an Ed25519 key")
        return Ed25519PrivateKey(self, key)

    def check_public_key(self, public_key: bytes) -> None:
        if len(public_key) != 32:
            raise InvalidKey("an Ed25519 public key is 32 bytes")
        # libsodium checks the encoding is a canonical point of the prime-order subgroup;
        # OpenSSL's loader accepts any 32 bytes.
        if not _is_valid_point(bytes(public_key)):
            raise InvalidKey("not a valid Ed25519 public key: not a point of the prime-order group")
        try:
            _ed_public_key(bytes(public_key))
        except Exception:
            raise InvalidKey("not a valid Ed25519 public key") from None

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if len(public_key) != 32 or len(signature) != 64:
            return False
        try:
            _ed_public_key(bytes(public_key)).verify(bytes(signature), message)
        except Exception:
            return False
        return True

    def aead_encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return AESGCM(key).encrypt(nonce, plaintext, aad)

    def aead_decrypt(self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return AESGCM(key).decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise DecryptionFailed("AES-GCM authentication failed") from None
