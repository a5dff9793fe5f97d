"""The interface every crypto suite offers: hash, keys, signatures, authenticated encryption."""

from __future__ import annotations

import abc
from collections.abc import Callable


class CryptoError(Exception):
    """Bad key material or ciphertext given to a suite."""


class InvalidKey(CryptoError):
    """A public or private key could not be decoded for this suite."""


class DecryptionFailed(CryptoError):
    """Authenticated decryption failed: wrong key, nonce, associated data or a tampered text."""


class PrivateKey(abc.ABC):
    """A signing key of one suite."""

    suite: Suite

    @abc.abstractmethod
    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (the suite hashes it as its scheme prescribes)."""

    @abc.abstractmethod
    def public_bytes(self) -> bytes:
        """The public key in the suite's wire form (SM2: 65 bytes 04||x||y; Ed25519: 32 bytes)."""

    @abc.abstractmethod
    def encode_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted."""

    def public_hex(self) -> str:
        return self.public_bytes().hex()


class Suite(abc.ABC):
    """A complete set of primitives; a chain picks one at genesis and keeps it."""

    name: str
    hash_name: str
    signature_name: str
    public_key_size: int
    aead_key_size: int
    aead_nonce_size: int = 12

    @abc.abstractmethod
    def hash(self, data: bytes) -> bytes:
        """The suite's 32-byte hash of ``data``."""

    def hasher(self) -> Callable[[bytes], bytes]:
        return self.hash

    @abc.abstractmethod
    def generate_private_key(self) -> PrivateKey:
        """A fresh key from the operating system's secure random source."""

    @abc.abstractmethod
    def load_private_key_pem(self, pem: bytes) -> PrivateKey:
        """Load a PKCS#8 PEM key of this suite; raise InvalidKey otherwise."""

    @abc.abstractmethod
    def check_public_key(self, public_key: bytes) -> None:
        """Raise InvalidKey unless ``public_key`` is a valid point/key of this suite."""

    @abc.abstractmethod
    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True only for a valid signature; any malformed input gives False, never an exception."""

    @abc.abstractmethod
    def aead_encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Ciphertext with its 16-byte tag appended."""

    @abc.abstractmethod
    def aead_decrypt(self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Plaintext; raise DecryptionFailed when the tag does not check."""
