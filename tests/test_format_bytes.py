"""Every struct of docs/proof-format.md §2 against bytes written by hand from the page's table.

The expected bytes are MessagePack written out here, not produced by our encoder: the array
header, the tag string and each field, in the table's order, in the shortest forms of §2's
rules. A renamed tag, a reordered or missing field, or a longer form than needed fails here.
The table itself is read too, so the page and these bytes cannot drift apart unnoticed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from zhongshu.codec import decode, encode
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.types import (
    PRECOMMIT,
    STATUS_FAILED,
    ChainParams,
    CommitCertificate,
    CommitSig,
    Event,
    Genesis,
    Header,
    Receipt,
    Transaction,
    TxBody,
    Validator,
    ValidatorSet,
    Vote,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "proof-format.md"


# MessagePack by hand (proof-format.md §2, rules 2-5), for the field values only.
def u(n: int) -> str:
    """uint, shortest form."""
    if n < 0x80:
        return f"{n:02x}"
    if n < 1 << 8:
        return f"cc{n:02x}"
    if n < 1 << 16:
        return f"cd{n:04x}"
    if n < 1 << 32:
        return f"ce{n:08x}"
    return f"cf{n:016x}"


def s(text: str) -> str:
    """str: fixstr below 32 bytes, else str8."""
    raw = text.encode()
    head = f"{0xA0 + len(raw):02x}" if len(raw) < 32 else f"d9{len(raw):02x}"
    return head + raw.hex()


def b(raw: bytes) -> str:
    """bin8 (every value here is shorter than 256 bytes)."""
    assert len(raw) < 256
    return f"c4{len(raw):02x}" + raw.hex()


H1, H2, H3, H4, H5, H6 = (bytes([i]) * 32 for i in range(1, 7))
KEY = bytes.fromhex("04" + "ab" * 64)

# (value, the bytes written by hand): array header, tag, fields in the table's order.
CASES: list[tuple[str, Any, str]] = [
    (
        "TxBody",
        TxBody("city", H1, KEY, "evidence", "put", b"\x01\x02", 300, 70000),
        "99"
        + "a2"
        + "7478"
        + s("city")
        + b(H1)
        + b(KEY)
        + s("evidence")
        + s("put")
        + b(b"\x01\x02")
        + "cd012c"
        + "ce00011170",
    ),
    (
        "Transaction",
        Transaction("city", H1, KEY, "evidence", "put", b"", 5, 1, b"\x30\x44"),
        "9a"
        + "a2"
        + "7478"
        + s("city")
        + b(H1)
        + b(KEY)
        + s("evidence")
        + s("put")
        + "c400"
        + "05"
        + "01"
        + "c4023044",
    ),
    (
        "Event",
        Event("evidence", "deposited", b"\x80"),
        "94" + "a5" + "6576656e74" + s("evidence") + s("deposited") + "c40180",
    ),
    (
        "Receipt",
        Receipt(H2, STATUS_FAILED, b"", "too big", [Event("kv", "set", b"")]),
        "96"
        + "a7"
        + "72656365697074"
        + b(H2)
        + "01"
        + "c400"
        + s("too big")
        + "91"
        + "94"
        + "a5"
        + "6576656e74"
        + s("kv")
        + s("set")
        + "c400",
    ),
    (
        "Header",
        Header("city", 2, 1_700_000_002_000, H1, 3, H2, H3, H4, H5, H6, KEY),
        "9c"
        + "a6"
        + "686561646572"
        + s("city")
        + "02"
        + "cf0000018bcfe56fd0"
        + b(H1)
        + "03"
        + b(H2)
        + b(H3)
        + b(H4)
        + b(H5)
        + b(H6)
        + b(KEY),
    ),
    (
        "Vote",
        Vote(PRECOMMIT, "city", 300, 1, b""),
        "96" + "a4" + "766f7465" + "02" + s("city") + "cd012c" + "01" + "c400",
    ),
    ("CommitSig", CommitSig(KEY, b"\x01\x02\x03"), "92" + b(KEY) + "c403010203"),
    (
        "CommitCertificate",
        CommitCertificate(7, 0, H3, [CommitSig(KEY, b"\x09")]),
        "95" + "a6" + "636f6d6d6974" + "07" + "00" + b(H3) + "91" + "92" + b(KEY) + "c40109",
    ),
    ("Validator", Validator(KEY, 256, "v0"), "93" + b(KEY) + "cd0100" + "a27630"),
    (
        "ValidatorSet",
        ValidatorSet([Validator(KEY, 1, "a"), Validator(H1, 2, "")]),
        "92"
        + "aa"
        + "76616c696461746f7273"
        + "92"
        + "93"
        + b(KEY)
        + "01"
        + "a161"
        + "93"
        + b(H1)
        + "02"
        + "a0",
    ),
    ("ChainParams", ChainParams(), "94" + "ccc8" + "cd1388" + "ce00800000" + "ce00018000"),
    (
        "Genesis",
        Genesis(
            "city", "sm", 1_700_000_000_000, ValidatorSet([Validator(KEY, 1, "v0")]), ChainParams(1, 2, 3, 4)
        ),
        "96"
        + "a7"
        + "67656e65736973"
        + s("city")
        + s("sm")
        + "cf0000018bcfe56800"
        + "92"
        + "aa"
        + "76616c696461746f7273"
        + "91"
        + "93"
        + b(KEY)
        + "01"
        + "a27630"
        + "94"
        + "01020304",
    ),
    (
        "EvidencePut",
        EvidencePut(H4, "deed.pdf", {"z": "1", "case": "2024-001"}, b"\xff"),
        "95"
        + "ac"
        + "65766964656e63652e707574"
        + b(H4)
        + s("deed.pdf")
        + "82"
        + s("case")
        + s("2024-001")
        + s("z")
        + s("1")
        + "c401ff",
    ),
]


def documented_tags() -> dict[str, str | None]:
    """struct name -> tag (None for untagged) as the page's table states them."""
    tags: dict[str, str | None] = {}
    for name, tag in re.findall(r"^\| \*\*(\w+)\*\*[^|]*\| (`\"[\w.]+\"`|—) \|", DOC.read_text(), flags=re.M):
        tags[name] = None if tag == "—" else tag.strip('`"')
    return tags


def test_the_table_names_every_struct_checked_here_with_its_tag() -> None:
    tags = documented_tags()
    assert set(tags) == {name for name, _, _ in CASES}
    for name, _, expected in CASES:
        tag = tags[name]
        if tag is None:
            continue
        # The bytes written here carry the documented tag right after the array header.
        assert bytes.fromhex(expected)[1:].startswith(bytes([0xA0 + len(tag)]) + tag.encode()), name


@pytest.mark.parametrize(("name", "value", "expected"), CASES, ids=[name for name, _, _ in CASES])
def test_encoding_is_the_documented_bytes(name: str, value: Any, expected: str) -> None:
    assert encode(value).hex() == expected
    # And those bytes, handed in, decode canonically to the value.
    assert decode(bytes.fromhex(expected), type(value)) == value


def test_a_transaction_is_its_body_with_the_signature_appended() -> None:
    # §2: the encoded TxBody is the Transaction with 0x9a -> 0x99 and the signature removed.
    ((_, tx, tx_hex),) = [c for c in CASES if c[0] == "Transaction"]
    body = TxBody(*[getattr(tx, f) for f in TxBody.__struct_fields__])
    assert "99" + tx_hex[2 : -len("c4023044")] == encode(body).hex()
