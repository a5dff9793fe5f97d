"""A small, slow, pure-Python SM2 reference (GB/T 32918), for tests only.

It exists to check vectors our product does not cover (custom curves, SM2 encryption,
pre-hashed verification) and to cross-check the product's SM2 on the default curve. It is
written for clarity, not for speed or side-channel safety: never use it to handle real keys.

Hashing is SM3 from ``zhongshu.crypto.sm``; that function is itself checked against the
GB/T 32905 vectors in test_crypto_vectors.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhongshu.crypto.sm import sm3

DEFAULT_ID = b"1234567812345678"

Point = tuple[int, int] | None
"""An affine point (x, y), or None for the point at infinity."""


@dataclass(frozen=True)
class Curve:
    """A short Weierstrass curve y^2 = x^3 + a x + b over GF(p), base point G of order n."""

    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    @classmethod
    def from_hex(cls, params: dict[str, str]) -> Curve:
        return cls(*(int(params[k], 16) for k in ("p", "a", "b", "gx", "gy", "n")))

    @property
    def g(self) -> Point:
        return (self.gx, self.gy)

    @property
    def size(self) -> int:
        """Bytes in one field element, ceil(log2(p) / 8)."""
        return (self.p.bit_length() + 7) // 8

    def contains(self, pt: Point) -> bool:
        if pt is None:
            return True
        x, y = pt
        if not (0 <= x < self.p and 0 <= y < self.p):
            return False
        return (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0

    def add(self, p1: Point, p2: Point) -> Point:
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        (x1, y1), (x2, y2) = p1, p2
        if x1 == x2 and (y1 + y2) % self.p == 0:
            return None
        if p1 == p2:
            lam = (3 * x1 * x1 + self.a) * pow(2 * y1, -1, self.p) % self.p
        else:
            lam = (y2 - y1) * pow(x2 - x1, -1, self.p) % self.p
        x3 = (lam * lam - x1 - x2) % self.p
        return (x3, (lam * (x1 - x3) - y1) % self.p)

    def mul(self, k: int, pt: Point) -> Point:
        """k * pt by double-and-add, most significant bit first."""
        result: Point = None
        for bit in bin(k % self.n)[2:]:
            result = self.add(result, result)
            if bit == "1":
                result = self.add(result, pt)
        return result

    def int_bytes(self, v: int) -> bytes:
        return v.to_bytes(self.size, "big")

    def point_bytes(self, pt: Point) -> bytes:
        """Uncompressed encoding 04 || x || y."""
        assert pt is not None
        return b"\x04" + self.int_bytes(pt[0]) + self.int_bytes(pt[1])

    def point_from_bytes(self, raw: bytes) -> Point:
        if len(raw) != 1 + 2 * self.size or raw[0] != 4:
            raise ValueError("not an uncompressed point")
        x = int.from_bytes(raw[1 : 1 + self.size], "big")
        y = int.from_bytes(raw[1 + self.size :], "big")
        pt = (x, y)
        if not self.contains(pt):
            raise ValueError("not a point on the curve")
        return pt


def public_key(curve: Curve, d: int) -> Point:
    return curve.mul(d, curve.g)


def za(curve: Curve, pub: Point, user_id: bytes = DEFAULT_ID) -> bytes:
    """ZA = SM3(ENTL || ID || a || b || xG || yG || xA || yA), ENTL the ID's length in bits."""
    assert pub is not None
    entl = (8 * len(user_id)).to_bytes(2, "big")
    parts = [curve.a, curve.b, curve.gx, curve.gy, pub[0], pub[1]]
    return sm3(entl + user_id + b"".join(curve.int_bytes(v) for v in parts))


def message_digest(curve: Curve, pub: Point, message: bytes, user_id: bytes = DEFAULT_ID) -> int:
    """e = SM3(ZA || M) as an integer."""
    return int.from_bytes(sm3(za(curve, pub, user_id) + message), "big")


def sign_digest(curve: Curve, d: int, e: int, k: int) -> tuple[int, int]:
    """GB/T 32918.2 6.1 with the nonce k given: r = (e + x1) mod n, s = (1+d)^-1 (k - r d) mod n."""
    x1 = curve.mul(k, curve.g)
    assert x1 is not None
    r = (e + x1[0]) % curve.n
    if r == 0 or r + k == curve.n:
        raise ValueError("bad nonce: r = 0 or r + k = n")
    s = pow(1 + d, -1, curve.n) * (k - r * d) % curve.n
    if s == 0:
        raise ValueError("bad nonce: s = 0")
    return r, s


def sign(
    curve: Curve, d: int, message: bytes, k: int, user_id: bytes = DEFAULT_ID
) -> tuple[int, int]:
    pub = public_key(curve, d)
    return sign_digest(curve, d, message_digest(curve, pub, message, user_id), k)


def verify_digest(curve: Curve, pub: Point, e: int, r: int, s: int) -> bool:
    """GB/T 32918.2 7.1 on an already computed e = SM3(ZA || M)."""
    if not (1 <= r < curve.n and 1 <= s < curve.n):
        return False
    if pub is None or not curve.contains(pub):
        return False
    t = (r + s) % curve.n
    if t == 0:
        return False
    pt = curve.add(curve.mul(s, curve.g), curve.mul(t, pub))
    if pt is None:
        return False
    return (e + pt[0]) % curve.n == r


def verify(
    curve: Curve, pub: Point, message: bytes, r: int, s: int, user_id: bytes = DEFAULT_ID
) -> bool:
    return verify_digest(curve, pub, message_digest(curve, pub, message, user_id), r, s)


def kdf(z: bytes, klen: int) -> bytes:
    """GB/T 32918.4 5.4.3: SM3(Z || ct) for ct = 1, 2, ... (32-bit big endian), cut to klen."""
    out = b""
    ct = 1
    while len(out) < klen:
        out += sm3(z + ct.to_bytes(4, "big"))
        ct += 1
    return out[:klen]


# --- a minimal DER reader / writer for GM/T 0009 SM2 ciphertexts -------------------------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def _der_int(v: int) -> bytes:
    return _der_tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _der_read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One (tag, value, next position); definite lengths only."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        nbytes = length & 0x7F
        length = int.from_bytes(data[pos : pos + nbytes], "big")
        pos += nbytes
    value = data[pos : pos + length]
    if len(value) != length:
        raise ValueError("truncated DER")
    return tag, value, pos + length


def encode_ciphertext(x1: int, y1: int, c3: bytes, c2: bytes) -> bytes:
    """DER SEQUENCE { C1x INTEGER, C1y INTEGER, C3 OCTET STRING, C2 OCTET STRING } (GM/T 0009)."""
    body = _der_int(x1) + _der_int(y1) + _der_tlv(0x04, c3) + _der_tlv(0x04, c2)
    return _der_tlv(0x30, body)


def decode_ciphertext(der: bytes) -> tuple[int, int, bytes, bytes]:
    tag, body, end = _der_read(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("not one DER SEQUENCE")
    fields = []
    pos = 0
    for want in (0x02, 0x02, 0x04, 0x04):
        tag, value, pos = _der_read(body, pos)
        if tag != want:
            raise ValueError("unexpected DER tag")
        fields.append(value)
    if pos != len(body):
        raise ValueError("trailing bytes in the SEQUENCE")
    x1, y1 = (int.from_bytes(v, "big") for v in fields[:2])
    return x1, y1, fields[2], fields[3]


def encrypt(curve: Curve, pub: Point, message: bytes, k: int) -> bytes:
    """GB/T 32918.4 6.1 with the nonce k given; ciphertext in GM/T 0009 DER form."""
    c1 = curve.mul(k, curve.g)
    shared = curve.mul(k, pub)
    assert c1 is not None and shared is not None
    x2, y2 = curve.int_bytes(shared[0]), curve.int_bytes(shared[1])
    t = kdf(x2 + y2, len(message))
    if message and not any(t):
        raise ValueError("bad nonce: KDF output is all zero")
    c2 = bytes(m ^ b for m, b in zip(message, t, strict=True))
    c3 = sm3(x2 + message + y2)
    return encode_ciphertext(c1[0], c1[1], c3, c2)


def decrypt(curve: Curve, d: int, der: bytes) -> bytes:
    """GB/T 32918.4 7.1; raise ValueError when C1 is off the curve or C3 does not check."""
    x1, y1, c3, c2 = decode_ciphertext(der)
    c1 = (x1, y1)
    if not curve.contains(c1):
        raise ValueError("C1 is not on the curve")
    shared = curve.mul(d, c1)
    if shared is None:
        raise ValueError("d * C1 is the point at infinity")
    x2, y2 = curve.int_bytes(shared[0]), curve.int_bytes(shared[1])
    t = kdf(x2 + y2, len(c2))
    if c2 and not any(t):
        raise ValueError("KDF output is all zero")
    message = bytes(c ^ b for c, b in zip(c2, t, strict=True))
    if sm3(x2 + message + y2) != c3:
        raise ValueError("C3 does not match: wrong key or tampered ciphertext")
    return message
