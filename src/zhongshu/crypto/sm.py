"""The national-crypto suite: SM2 signatures (GB/T 32918), SM3 (GB/T 32905), SM4-GCM (GB/T 32907).

SM2 signs with the default distinguishing ID ``1234567812345678`` (GM/T 0009), which is what
Tongsuo uses for SM2 keys with SM3; signatures are DER SEQUENCE{r, s}.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

from tongsuopy.crypto import hashes, serialization
from tongsuopy.crypto.asymciphers import ec
from tongsuopy.crypto.ciphers.aead import SM4GCM

from zhongshu.crypto.suite import DecryptionFailed, InvalidKey, PrivateKey, Suite

DEFAULT_SM2_ID = b"1234567812345678"


def _make_sm3() -> Callable[[bytes], bytes]:
    """hashlib's SM3 when the linked OpenSSL has it (fast), else Tongsuo's."""
    try:
        hashlib.new("sm3", b"")
    except ValueError:

        def sm3_tongsuo(data: bytes) -> bytes:
            h = hashes.Hash(hashes.SM3())
            h.update(data)
            return bytes(h.finalize())

        return sm3_tongsuo

    # hashlib.new looks the digest up in OpenSSL on every call; copying a ready context is
    # about twice as fast for the short inputs a Merkle tree hashes (65 bytes: 1.5 against 3.4 us).
    empty = hashlib.new("sm3")

    def sm3_hashlib(data: bytes) -> bytes:
        h = empty.copy()
        h.update(data)
        return h.digest()

    return sm3_hashlib


sm3 = _make_sm3()


def sm3_tongsuo(data: bytes) -> bytes:
    """SM3 computed by Tongsuo (used to cross-check the hashlib path)."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return bytes(h.finalize())


@functools.lru_cache(maxsize=4096)
def _sm2_public_key(raw: bytes) -> Any:
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SM2(), raw)


class SM2PrivateKey(PrivateKey):
    def __init__(self, suite: SMSuite, key: Any) -> None:
        self.suite = suite
        self._key = key
        self._public = bytes(
            key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message, ec.ECDSA(hashes.SM3())))

    def public_bytes(self) -> bytes:
        return self._public

    def encode_pem(self) -> bytes:
        return bytes(
            self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def private_value(self) -> int:
        return int(self._key.private_numbers().private_value)


class SMSuite(Suite):
    name = "sm"
    hash_name = "SM3"
    signature_name = "SM2 (GB/T 32918, ID 1234567812345678, DER r,s)"
    public_key_size = 65
    aead_key_size = 16

    def hash(self, data: bytes) -> bytes:
        return sm3(data)

    def hasher(self) -> Callable[[bytes], bytes]:
        return sm3

    def generate_private_key(self) -> SM2PrivateKey:
        return SM2PrivateKey(self, ec.generate_private_key(ec.SM2()))

    def private_key_from_int(self, value: int) -> SM2PrivateKey:
        """A key from its scalar (tests and vectors only)."""
        return SM2PrivateKey(self, ec.derive_private_key(value, ec.SM2()))

    def load_private_key_pem(self, pem: bytes) -> SM2PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, None)
        except Exception as exc:
            raise InvalidKey(f"not an SM2 PKCS#8 PEM private key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SM2):
            raise InvalidKey("the PEM key is not an SM2 key")
        return SM2PrivateKey(self, key)

    def check_public_key(self, public_key: bytes) -> None:
        if len(public_key) != 65 or public_key[0] != 4:
            raise InvalidKey("an SM2 public key is 65 bytes: 04 || x || y")
        try:
            _sm2_public_key(bytes(public_key))
        except Exception:
            raise InvalidKey("the SM2 public key is not a point on the curve") from None

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if len(public_key) != 65 or len(signature) > 80:
            return False
        try:
            key = _sm2_public_key(bytes(public_key))
            key.verify(bytes(signature), message, ec.ECDSA(hashes.SM3()))
        except Exception:
            # Tongsuo raises InvalidSignature, InternalError (bad DER) or ValueError.
            return False
        return True

    def aead_encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return bytes(SM4GCM(key).encrypt(nonce, plaintext, aad))

    def aead_decrypt(self, key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return bytes(SM4GCM(key).decrypt(nonce, ciphertext, aad))
        except Exception:
            raise DecryptionFailed("SM4-GCM authentication failed") from None
