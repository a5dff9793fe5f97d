"""SM2 interoperability with gmssl (pure Python) in both directions, malformed inputs, PEM.

gmssl signs and verifies with the GM/T 0009 default ID ``1234567812345678``, as we do, so
signatures must cross over unchanged. gmssl's signatures are raw r || s in hex; ours are DER.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from gmssl.sm2 import CryptSM2
from hypothesis import given, settings
from hypothesis import strategies as st

import zhongshu.crypto
from zhongshu.crypto import InvalidKey, PrivateKey, Suite, get_suite
from zhongshu.crypto.intl import Ed25519PrivateKey, IntlSuite
from zhongshu.crypto.sm import SM2PrivateKey, SMSuite

SM2_P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
SM2_A = SM2_P - 3
SM2_B = int("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93", 16)
SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
# GB/T 32918.5 Annex A private key: its public x starts with hex "09", which trips gmssl's
# public_key.lstrip("04") (see gmssl_sm2 below), so it is always among the keys tested.
ANNEX_A_D = int("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8", 16)

MESSAGES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"a", id="1B"),
    pytest.param(b"message digest", id="annexA-msg"),
    pytest.param(bytes(range(256)), id="256B"),
    pytest.param(bytes((i * 7 + 3) % 256 for i in range(10 * 1024)), id="10KB"),
]


def gmssl_sm2(public_key: bytes, private_value: int | None = None) -> CryptSM2:
    """A gmssl SM2 context for our 65-byte public key (and optionally the private scalar)."""
    assert len(public_key) == 65 and public_key[0] == 4
    ctx = CryptSM2(
        private_key=None if private_value is None else f"{private_value:064x}",
        public_key=public_key[1:].hex(),
    )
    # gmssl drops a leading "04" with str.lstrip("04"), which also strips any further leading
    # '0' and '4' digits of x; set the 128-hex-digit x || y directly to stay clear of that.
    ctx.public_key = public_key[1:].hex()
    return ctx


def der_to_raw_hex(sig: bytes) -> str:
    r, s = decode_dss_signature(sig)
    return f"{r:064x}{s:064x}"


def raw_hex_to_der(sig: str) -> bytes:
    assert len(sig) == 128
    return encode_dss_signature(int(sig[:64], 16), int(sig[64:], 16))


@pytest.fixture(scope="module")
def sm_keys() -> list[SM2PrivateKey]:
    suite = SMSuite()
    return [suite.generate_private_key(), suite.private_key_from_int(ANNEX_A_D)]


# --- SM2 with gmssl, both directions --------------------------------------------------------


def test_smsuite_key_accessors() -> None:
    key = SMSuite().generate_private_key()
    pub = key.public_bytes()
    assert len(pub) == 65 and pub[0] == 4
    assert 1 <= key.private_value() < SM2_N
    assert key.public_hex() == pub.hex()
    assert SMSuite().private_key_from_int(key.private_value()).public_bytes() == pub
    SMSuite().check_public_key(pub)


@pytest.mark.parametrize("message", MESSAGES)
def test_ours_sign_gmssl_verify(sm_keys: list[SM2PrivateKey], message: bytes) -> None:
    for key in sm_keys:
        sig = key.sign(message)
        g = gmssl_sm2(key.public_bytes())
        assert g.verify_with_sm3(der_to_raw_hex(sig), message) is True
        assert g.verify_with_sm3(der_to_raw_hex(sig), message + b"\x00") is False


@pytest.mark.parametrize("message", MESSAGES)
def test_gmssl_sign_ours_verify(sm_keys: list[SM2PrivateKey], message: bytes) -> None:
    suite = SMSuite()
    for key in sm_keys:
        g = gmssl_sm2(key.public_bytes(), key.private_value())
        raw = g.sign_with_sm3(message)
        assert raw is not None
        assert suite.verify(key.public_bytes(), message, raw_hex_to_der(raw)) is True
        assert suite.verify(key.public_bytes(), message + b"\x00", raw_hex_to_der(raw)) is False
        other = sm_keys[0] if key is not sm_keys[0] else sm_keys[1]
        assert suite.verify(other.public_bytes(), message, raw_hex_to_der(raw)) is False


def test_gmssl_fixed_nonce_matches_annex_a() -> None:
    """gmssl with the Annex A nonce gives the Annex A (r, s), which we accept."""
    key = SMSuite().private_key_from_int(ANNEX_A_D)
    g = gmssl_sm2(key.public_bytes(), ANNEX_A_D)
    k = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
    raw = g.sign_with_sm3(b"message digest", k)
    assert raw.upper() == (
        "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
        "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
    )
    assert SMSuite().verify(key.public_bytes(), b"message digest", raw_hex_to_der(raw))


# --- malformed input: SM2 -------------------------------------------------------------------


def _sm2_y(x: int) -> int | None:
    """A square root of x^3 + ax + b mod p, or None (p = 3 mod 4)."""
    rhs = (x * x * x + SM2_A * x + SM2_B) % SM2_P
    y = pow(rhs, (SM2_P + 1) // 4, SM2_P)
    return y if y * y % SM2_P == rhs else None


def _sm2_noncanonical_x_key() -> bytes:
    """04 || (x + p) || y for a curve point (x, y): both coordinates fit 32 bytes, x is >= p."""
    x = 1
    while (y := _sm2_y(x)) is None:
        x += 1
    assert x + SM2_P < 2**256
    return b"\x04" + (x + SM2_P).to_bytes(32, "big") + y.to_bytes(32, "big")


@pytest.fixture(scope="module")
def sm_signed() -> tuple[bytes, bytes, bytes]:
    key = SMSuite().generate_private_key()
    msg = b"zhongshu interop"
    return key.public_bytes(), msg, key.sign(msg)


def _bad_sm2_signatures(sig: bytes) -> dict[str, bytes]:
    r, s = decode_dss_signature(sig)
    return {
        "empty": b"",
        "truncated-1": sig[:-1],
        "truncated-half": sig[: len(sig) // 2],
        "header-only": sig[:2],
        "trailing-byte": sig + b"\x00",
        "garbage-72": bytes(range(72)),
        "garbage-der-like": b"\x30\x06\x02\x01\x01\x02\x01\x01",
        "raw-r||s": r.to_bytes(32, "big") + s.to_bytes(32, "big"),
        "long-form-length": b"\x30\x81" + bytes([len(sig) - 2]) + sig[2:],
        "r=0": encode_dss_signature(0, s),
        "s=0": encode_dss_signature(r, 0),
        "r+n": encode_dss_signature(r + SM2_N, s),
        "s+n": encode_dss_signature(r, s + SM2_N),
        "n-s": encode_dss_signature(r, SM2_N - s),
        "swapped": encode_dss_signature(s, r),
        "huge": sig * 3,
    }


@pytest.mark.parametrize("case", sorted(_bad_sm2_signatures(encode_dss_signature(1, 1))))
def test_sm2_verify_bad_signature_is_false(
    sm_signed: tuple[bytes, bytes, bytes], case: str
) -> None:
    pub, msg, sig = sm_signed
    assert SMSuite().verify(pub, msg, sig) is True
    bad = _bad_sm2_signatures(sig)[case]
    assert bad != sig
    assert SMSuite().verify(pub, msg, bad) is False


def _bad_sm2_keys(pub: bytes) -> dict[str, bytes]:
    x, y = int.from_bytes(pub[1:33], "big"), int.from_bytes(pub[33:], "big")
    return {
        "not-on-curve": pub[:-1] + bytes([pub[-1] ^ 1]),
        "64-bytes": pub[1:],
        "prefix-02-65-bytes": b"\x02" + pub[1:],
        "prefix-03-65-bytes": b"\x03" + pub[1:],
        "compressed-33-bytes": bytes([2 + (y & 1)]) + pub[1:33],
        "hybrid-06/07": bytes([6 + (y & 1)]) + pub[1:],
        "all-zero": b"\x04" + bytes(64),
        "infinity-00": b"\x00",
        "empty": b"",
        "66-bytes": pub + b"\x00",
        "x-plus-p": _sm2_noncanonical_x_key(),
        "x-only-zero-y": b"\x04" + x.to_bytes(32, "big") + bytes(32),
    }


@pytest.mark.parametrize("case", sorted(_bad_sm2_keys(b"\x04" + bytes(range(64)))))
def test_sm2_bad_public_key(sm_signed: tuple[bytes, bytes, bytes], case: str) -> None:
    pub, msg, sig = sm_signed
    bad = _bad_sm2_keys(pub)[case]
    assert bad != pub
    assert SMSuite().verify(bad, msg, sig) is False
    with pytest.raises(InvalidKey):
        SMSuite().check_public_key(bad)


def test_sm2_noncanonical_x_key_is_a_real_point_mod_p() -> None:
    """The x + p key above is rejected for its encoding, not because the point is off the curve."""
    raw = _sm2_noncanonical_x_key()
    x, y = int.from_bytes(raw[1:33], "big") % SM2_P, int.from_bytes(raw[33:], "big")
    assert (y * y - (x**3 + SM2_A * x + SM2_B)) % SM2_P == 0
    canonical = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    SMSuite().check_public_key(canonical)


@settings(max_examples=150, deadline=None)
@given(pub=st.binary(min_size=0, max_size=70), sig=st.binary(min_size=0, max_size=90))
def test_sm2_verify_never_raises(pub: bytes, sig: bytes) -> None:
    assert SMSuite().verify(pub, b"m", sig) is False


@settings(max_examples=150, deadline=None)
@given(body=st.binary(min_size=64, max_size=64), sig=st.binary(max_size=80))
def test_sm2_verify_random_65_byte_key_never_raises(body: bytes, sig: bytes) -> None:
    assert SMSuite().verify(b"\x04" + body, b"m", sig) is False


# --- malformed input: Ed25519 (intl) --------------------------------------------------------

ED_P = 2**255 - 19
ED_D = -121665 * pow(121666, -1, ED_P) % ED_P
ED_L = 2**252 + 27742317777372353535851937790883648493


def _ed_off_curve_y() -> int:
    """The smallest y for which no x satisfies -x^2 + y^2 = 1 + d x^2 y^2."""
    y = 2
    while True:
        x2 = (y * y - 1) * pow(ED_D * y * y + 1, -1, ED_P) % ED_P
        if pow(x2, (ED_P - 1) // 2, ED_P) == ED_P - 1:
            return y
        y += 1


@pytest.fixture(scope="module")
def ed_signed() -> tuple[bytes, bytes, bytes]:
    key = IntlSuite().generate_private_key()
    msg = b"zhongshu interop"
    return key.public_bytes(), msg, key.sign(msg)


def _bad_ed_signatures(sig: bytes) -> dict[str, bytes]:
    s = int.from_bytes(sig[32:], "little")
    return {
        "empty": b"",
        "truncated-1": sig[:-1],
        "truncated-half": sig[:32],
        "trailing-byte": sig + b"\x00",
        "garbage-64": bytes(range(64)),
        "zeros-64": bytes(64),
        "flipped-R": bytes([sig[0] ^ 1]) + sig[1:],
        "flipped-S": sig[:32] + bytes([sig[32] ^ 1]) + sig[33:],
        "S+L": sig[:32] + (s + ED_L).to_bytes(32, "little"),
        "der-like": b"\x30\x44\x02\x20" + sig[:32] + b"\x02\x20" + sig[32:],
    }


@pytest.mark.parametrize("case", sorted(_bad_ed_signatures(bytes(64))))
def test_ed25519_verify_bad_signature_is_false(
    ed_signed: tuple[bytes, bytes, bytes], case: str
) -> None:
    pub, msg, sig = ed_signed
    assert IntlSuite().verify(pub, msg, sig) is True
    bad = _bad_ed_signatures(sig)[case]
    assert bad != sig
    assert IntlSuite().verify(pub, msg, bad) is False


def _bad_ed_keys(pub: bytes) -> dict[str, bytes]:
    return {
        "not-on-curve": _ed_off_curve_y().to_bytes(32, "little"),
        "y-not-below-p": (ED_P + 1).to_bytes(32, "little"),
        "31-bytes": pub[:31],
        "33-bytes": pub + b"\x00",
        "64-bytes": pub + pub,
        "sm2-form-65-bytes": b"\x04" + bytes(64),
        "empty": b"",
    }


@pytest.mark.parametrize("case", sorted(_bad_ed_keys(bytes(32))))
def test_ed25519_bad_public_key(ed_signed: tuple[bytes, bytes, bytes], case: str) -> None:
    pub, msg, sig = ed_signed
    bad = _bad_ed_keys(pub)[case]
    assert bad != pub
    assert IntlSuite().verify(bad, msg, sig) is False
    with pytest.raises(InvalidKey):
        IntlSuite().check_public_key(bad)


def test_ed25519_good_public_keys_pass_check() -> None:
    suite = IntlSuite()
    for _ in range(20):
        suite.check_public_key(suite.generate_private_key().public_bytes())
    # RFC 8032 7.1 TEST 1 public key.
    suite.check_public_key(
        bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    )


def test_ed25519_small_order_public_keys_rejected() -> None:
    """y = 1 (the identity) and y = 0 (order 4) decode, but are weak keys: libsodium refuses them."""
    suite = IntlSuite()
    for weak in ((1).to_bytes(32, "little"), (0).to_bytes(32, "little")):
        with pytest.raises(InvalidKey):
            suite.check_public_key(weak)


def test_ed25519_negative_zero_x_rejected() -> None:
    """y = 1 has only x = 0, so the sign bit set (x "negative") is no valid encoding."""
    with pytest.raises(InvalidKey):
        IntlSuite().check_public_key((1 | 1 << 255).to_bytes(32, "little"))


@settings(max_examples=150, deadline=None)
@given(pub=st.binary(max_size=40), sig=st.binary(max_size=70))
def test_ed25519_verify_never_raises(pub: bytes, sig: bytes) -> None:
    assert IntlSuite().verify(pub, b"m", sig) is False


# --- PEM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sm", "intl"])
def test_pem_round_trip(name: str) -> None:
    suite = get_suite(name)
    key = suite.generate_private_key()
    pem = key.encode_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    loaded = suite.load_private_key_pem(pem)
    assert loaded.public_bytes() == key.public_bytes()
    assert loaded.encode_pem() == pem
    msg = b"pem round trip"
    assert suite.verify(key.public_bytes(), msg, loaded.sign(msg))
    assert suite.verify(loaded.public_bytes(), msg, key.sign(msg))


def test_pem_round_trip_keeps_sm2_scalar() -> None:
    key = SMSuite().generate_private_key()
    loaded = SMSuite().load_private_key_pem(key.encode_pem())
    assert loaded.private_value() == key.private_value()


@pytest.mark.parametrize(
    ("name", "cls"), [("sm", SM2PrivateKey), ("intl", Ed25519PrivateKey)], ids=["sm", "intl"]
)
def test_load_private_key_pem_tells_suites_apart(name: str, cls: type[PrivateKey]) -> None:
    key = get_suite(name).generate_private_key()
    loaded = zhongshu.crypto.load_private_key_pem(key.encode_pem())
    assert isinstance(loaded, cls)
    assert loaded.suite.name == name
    assert loaded.public_bytes() == key.public_bytes()


def test_pem_of_one_suite_is_refused_by_the_other() -> None:
    sm_pem = SMSuite().generate_private_key().encode_pem()
    ed_pem = IntlSuite().generate_private_key().encode_pem()
    with pytest.raises(InvalidKey):
        SMSuite().load_private_key_pem(ed_pem)
    with pytest.raises(InvalidKey):
        IntlSuite().load_private_key_pem(sm_pem)


def _foreign_pems() -> dict[str, bytes]:
    p256 = crypto_ec.generate_private_key(crypto_ec.SECP256R1())
    x = x25519.X25519PrivateKey.generate()
    ed = IntlSuite().generate_private_key().encode_pem()
    pkcs8 = serialization.PrivateFormat.PKCS8
    pem = serialization.Encoding.PEM
    return {
        "empty": b"",
        "garbage": b"not a key at all",
        "p256-pkcs8": p256.private_bytes(pem, pkcs8, serialization.NoEncryption()),
        "x25519-pkcs8": x.private_bytes(pem, pkcs8, serialization.NoEncryption()),
        "p256-public-key": p256.public_key().public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "ed25519-encrypted": ed25519.Ed25519PrivateKey.generate().private_bytes(
            pem, pkcs8, serialization.BestAvailableEncryption(b"pw")
        ),
        "ed25519-truncated": ed[: len(ed) // 2],
        "sm2-corrupted-body": _corrupt_pem(SMSuite().generate_private_key().encode_pem()),
    }


def _corrupt_pem(pem: bytes) -> bytes:
    lines = pem.splitlines()
    lines[1] = b"A" * len(lines[1])
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("case", sorted(_foreign_pems()))
def test_load_private_key_pem_refuses_other_keys(case: str) -> None:
    pem = _foreign_pems()[case]
    suites: list[Suite] = [SMSuite(), IntlSuite()]
    for suite in suites:
        with pytest.raises(InvalidKey):
            suite.load_private_key_pem(pem)
    with pytest.raises(InvalidKey):
        zhongshu.crypto.load_private_key_pem(pem)
