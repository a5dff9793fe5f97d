"""The canonical codec: ledger types round-trip, non-canonical bytes are refused, tags separate.

Strategies are derived from the structs' own field types (msgspec.inspect), so every struct in
zhongshu/ledger/types.py is covered, including fields added later; an unknown field type fails
loudly instead of being skipped.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.ledger import types as ledger_types
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.types import (
    ChainParams,
    Header,
    Transaction,
    TxBody,
    Validator,
    Vote,
)

LEDGER_TYPES: list[type[msgspec.Struct]] = sorted(
    (
        obj
        for obj in vars(ledger_types).values()
        if inspect.isclass(obj)
        and issubclass(obj, msgspec.Struct)
        and obj.__module__ == ledger_types.__name__
    ),
    key=lambda cls: cls.__name__,
)
# EvidencePut is ledger-layer too (Transaction.args of evidence.put) and has a map field.
ALL_TYPES = [*LEDGER_TYPES, EvidencePut]
TYPE_IDS = [cls.__name__ for cls in ALL_TYPES]

INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1


def test_ledger_types_found() -> None:
    names = set(TYPE_IDS)
    assert {"TxBody", "Transaction", "Header", "Vote", "Receipt", "Block", "Genesis"} <= names


# --- strategies from the field types --------------------------------------------------------


def strategy_for(t: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.StrType):
        return st.text(max_size=40)
    if isinstance(t, mi.BytesType):
        return st.binary(max_size=70)
    if isinstance(t, mi.IntType):
        return st.integers(INT64_MIN, UINT64_MAX)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.ListType):
        return st.lists(strategy_for(t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(strategy_for(t.key_type), strategy_for(t.value_type), max_size=4)
    if isinstance(t, mi.StructType):
        return struct_strategy(t.cls)
    raise NotImplementedError(f"no strategy for field type {t!r}: extend strategy_for")


def struct_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {f.name: strategy_for(f.type) for f in info.fields}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


STRATEGIES = {cls: struct_strategy(cls) for cls in ALL_TYPES}


# --- round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_TYPES, ids=TYPE_IDS)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_round_trip(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    value = data.draw(STRATEGIES[cls])
    raw = encode(value)
    back = decode(raw, cls)
    assert type(back) is cls
    assert back == value
    assert encode(back) == raw
    # Re-encoding is deterministic and every value has exactly this one accepted encoding.
    assert encode(value) == raw


@pytest.mark.parametrize("cls", ALL_TYPES, ids=TYPE_IDS)
def test_every_type_is_an_array(cls: type[msgspec.Struct]) -> None:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    assert info.array_like


@settings(max_examples=50, deadline=None)
@given(tx=STRATEGIES[Transaction])
def test_transaction_sign_bytes_are_the_body(tx: Transaction) -> None:
    assert tx.sign_bytes() == encode(tx.body())
    assert decode(tx.sign_bytes(), TxBody) == tx.body()


# --- a small MessagePack writer that can also write the longer (non-canonical) forms ---------

# Each form: (first byte, how many bytes of length/value follow, smallest and largest value).
UINT_FORMS = {"u8": (0xCC, "B"), "u16": (0xCD, ">H"), "u32": (0xCE, ">I"), "u64": (0xCF, ">Q")}
SINT_FORMS = {"i8": (0xD0, "b"), "i16": (0xD1, ">h"), "i32": (0xD2, ">i"), "i64": (0xD3, ">q")}


def mp_int(v: int, form: str | None = None) -> bytes:
    """MessagePack int; canonical (shortest, unsigned for v >= 0) unless ``form`` is named."""
    if form is None:
        if 0 <= v <= 0x7F:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        candidates = UINT_FORMS if v >= 0 else SINT_FORMS
        for name in candidates:
            try:
                return mp_int(v, name)
            except struct.error:
                continue
        raise ValueError(v)
    if form == "fix":
        assert -32 <= v <= 0x7F
        return struct.pack("b", v) if v < 0 else bytes([v])
    first, fmt = {**UINT_FORMS, **SINT_FORMS}[form]
    return bytes([first]) + struct.pack(fmt, v)


def int_forms(v: int) -> list[str]:
    """Every MessagePack form that can hold v."""
    forms = ["fix"] if -32 <= v <= 0x7F else []
    for name, (_, fmt) in {**UINT_FORMS, **SINT_FORMS}.items():
        try:
            struct.pack(fmt, v)
        except struct.error:
            continue
        forms.append(name)
    return forms


def _mp_len(n: int, fix: tuple[int, int] | None, forms: list[tuple[int, str]], form: int) -> bytes:
    """A length header: ``form`` -1 is the fix form, else an index into ``forms``."""
    if form == -1:
        assert fix is not None and n <= fix[1]
        return bytes([fix[0] | n])
    first, fmt = forms[form]
    return bytes([first]) + struct.pack(fmt, n)


def _canonical_len_form(n: int, fix_max: int | None, forms: list[tuple[int, str]]) -> int:
    if fix_max is not None and n <= fix_max:
        return -1
    for i, (_, fmt) in enumerate(forms):
        try:
            struct.pack(fmt, n)
            return i
        except struct.error:
            continue
    raise ValueError(n)


STR_FORMS = [(0xD9, "B"), (0xDA, ">H"), (0xDB, ">I")]
BIN_FORMS = [(0xC4, "B"), (0xC5, ">H"), (0xC6, ">I")]
ARRAY_FORMS = [(0xDC, ">H"), (0xDD, ">I")]
MAP_FORMS = [(0xDE, ">H"), (0xDF, ">I")]


def mp_str(s: str, form: int | None = None) -> bytes:
    raw = s.encode()
    form = _canonical_len_form(len(raw), 31, STR_FORMS) if form is None else form
    return _mp_len(len(raw), (0xA0, 31), STR_FORMS, form) + raw


def mp_bin(b: bytes, form: int | None = None) -> bytes:
    form = _canonical_len_form(len(b), None, BIN_FORMS) if form is None else form
    return _mp_len(len(b), None, BIN_FORMS, form) + b


def mp_array(items: list[bytes], form: int | None = None) -> bytes:
    form = _canonical_len_form(len(items), 15, ARRAY_FORMS) if form is None else form
    return _mp_len(len(items), (0x90, 15), ARRAY_FORMS, form) + b"".join(items)


def mp_map(pairs: list[tuple[bytes, bytes]], form: int | None = None) -> bytes:
    form = _canonical_len_form(len(pairs), 15, MAP_FORMS) if form is None else form
    return _mp_len(len(pairs), (0x80, 15), MAP_FORMS, form) + b"".join(k + v for k, v in pairs)


def longer_len_forms(n: int, fix_max: int | None, forms: list[tuple[int, str]]) -> list[int]:
    canonical = _canonical_len_form(n, fix_max, forms)
    return [i for i in range(len(forms)) if i > canonical]


def vote_bytes(
    v: Vote,
    *,
    int_form: tuple[str, str] | None = None,
    chain_id_form: int | None = None,
    hash_form: int | None = None,
    array_form: int | None = None,
    tag_form: int | None = None,
) -> bytes:
    """A Vote by hand: ["vote", kind, chain_id, height, round, block_hash]."""

    def i(name: str, value: int) -> bytes:
        return mp_int(value, int_form[1] if int_form and int_form[0] == name else None)

    items = [
        mp_str("vote", tag_form),
        i("kind", v.kind),
        mp_str(v.chain_id, chain_id_form),
        i("height", v.height),
        i("round", v.round),
        mp_bin(v.block_hash, hash_form),
    ]
    return mp_array(items, array_form)


votes = STRATEGIES[Vote]


def assert_non_canonical(raw: bytes, cls: type[Any], value: Any) -> None:
    """``raw`` holds ``value`` in a non-canonical form: refused, though it parses to ``value``."""
    assert raw != encode(value)
    with pytest.raises(DecodeError):
        decode(raw, cls)
    # It is the canonical check that refuses it: the lax decoder reads the same value.
    assert decode(raw, cls, canonical=False) == value


@settings(max_examples=100, deadline=None)
@given(v=votes)
def test_handwritten_vote_is_canonical(v: Vote) -> None:
    assert vote_bytes(v) == encode(v)
    assert decode(vote_bytes(v), Vote) == v


@settings(max_examples=100, deadline=None)
@given(v=votes, data=st.data())
def test_int_in_longer_form_is_refused(v: Vote, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["kind", "height", "round"]))
    value = getattr(v, name)
    canonical = mp_int(value)
    longer = [f for f in int_forms(value) if mp_int(value, f) != canonical]
    assume(longer)
    form = data.draw(st.sampled_from(longer))
    assert_non_canonical(vote_bytes(v, int_form=(name, form)), Vote, v)


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (0, "u8"),
        (5, "u64"),
        (5, "i8"),
        (127, "u16"),
        (128, "u16"),
        (200, "i16"),
        (-1, "i8"),
        (-33, "i64"),
        (70000, "u64"),
        (2**32, "i64"),
    ],
)
def test_int_in_longer_form_examples(value: int, form: str) -> None:
    v = Vote(2, "c", value, 0, b"")
    assert_non_canonical(vote_bytes(v, int_form=("height", form)), Vote, v)


@settings(max_examples=100, deadline=None)
@given(v=votes, data=st.data())
def test_str_bin_array_in_longer_form_are_refused(v: Vote, data: st.DataObject) -> None:
    which = data.draw(st.sampled_from(["chain_id", "block_hash", "array", "tag"]))
    if which == "chain_id":
        n = len(v.chain_id.encode())
        form = data.draw(st.sampled_from(longer_len_forms(n, 31, STR_FORMS)))
        raw = vote_bytes(v, chain_id_form=form)
    elif which == "tag":
        raw = vote_bytes(v, tag_form=data.draw(st.sampled_from([0, 1, 2])))
    elif which == "block_hash":
        forms = longer_len_forms(len(v.block_hash), None, BIN_FORMS)
        raw = vote_bytes(v, hash_form=data.draw(st.sampled_from(forms)))
    else:
        raw = vote_bytes(v, array_form=data.draw(st.sampled_from([0, 1])))
    assert_non_canonical(raw, Vote, v)


def evidence_bytes(e: EvidencePut, key_order: Callable[[list[str]], list[str]]) -> bytes:
    keys = key_order(list(e.metadata))
    pairs = [(mp_str(k), mp_str(e.metadata[k])) for k in keys]
    items = [mp_str("evidence.put"), mp_bin(e.digest), mp_str(e.name), mp_map(pairs)]
    return mp_array([*items, mp_bin(e.payload)])


@settings(max_examples=100, deadline=None)
@given(e=STRATEGIES[EvidencePut])
def test_map_keys_sorted_is_canonical(e: EvidencePut) -> None:
    assert evidence_bytes(e, sorted) == encode(e)
    assert decode(encode(e), EvidencePut) == e


evidence_with_map = st.builds(
    EvidencePut,
    digest=st.binary(max_size=64),
    name=st.text(max_size=20),
    metadata=st.dictionaries(st.text(max_size=8), st.text(max_size=8), min_size=2, max_size=6),
    payload=st.binary(max_size=16),
)


@settings(max_examples=100, deadline=None)
@given(e=evidence_with_map, data=st.data())
def test_unsorted_map_keys_inside_a_value_are_refused(e: EvidencePut, data: st.DataObject) -> None:
    order = list(data.draw(st.permutations(sorted(e.metadata))))
    if order == sorted(order):
        order.reverse()
    assert_non_canonical(evidence_bytes(e, lambda _keys: order), EvidencePut, e)


def test_unsorted_map_keys_examples() -> None:
    e = EvidencePut(b"\x01" * 32, "a.pdf", {"a": "1", "b": "2"})
    raw = evidence_bytes(e, lambda keys: sorted(keys, reverse=True))
    assert_non_canonical(raw, EvidencePut, e)
    # Also as a plain map, and nested in a list.
    m = {"x": 1, "y": 2, "z": 3}
    raw_map = mp_map([(mp_str(k), mp_int(m[k])) for k in ("y", "x", "z")])
    assert_non_canonical(raw_map, dict[str, int], m)
    assert_non_canonical(mp_array([raw_map]), list[dict[str, int]], [m])


def test_duplicate_map_keys_are_refused() -> None:
    raw = mp_map([(mp_str("a"), mp_int(1)), (mp_str("a"), mp_int(2))])
    with pytest.raises(DecodeError):
        decode(raw, dict[str, int])


def test_map_with_longer_header_is_refused() -> None:
    m = {"k": "v"}
    raw = mp_map([(mp_str("k"), mp_str("v"))], form=0)
    assert_non_canonical(raw, dict[str, str], m)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_trailing_and_truncated_bytes_are_refused(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(ALL_TYPES))
    value = data.draw(STRATEGIES[cls])
    raw = encode(value)
    extra = data.draw(st.binary(min_size=1, max_size=4))
    with pytest.raises(DecodeError):
        decode(raw + extra, cls)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        decode(raw[:cut], cls)


def test_missing_defaulted_fields_are_refused() -> None:
    """Array-like structs with defaults: the short array parses, but is not canonical."""
    assert_non_canonical(mp_array([]), ChainParams, ChainParams())
    v = Validator(b"\x04" * 65, 10)
    assert_non_canonical(mp_array([mp_bin(v.public_key), mp_int(10)]), Validator, v)


GOOD_VOTE = Vote(1, "c", 3, 0, b"h")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            mp_array([mp_str("vote"), b"\xcb" + struct.pack(">d", 1.0), mp_str("c"), b"\x03",
                      b"\x00", mp_bin(b"h")]),
            id="float-for-int",
        ),
        pytest.param(
            mp_array([mp_str("vote"), b"\xc3", mp_str("c"), b"\x03", b"\x00", mp_bin(b"h")]),
            id="bool-for-int",
        ),
        pytest.param(
            mp_array([mp_str("vote"), b"\x01", b"\xc0", b"\x03", b"\x00", mp_bin(b"h")]),
            id="nil-for-str",
        ),
        pytest.param(
            mp_array([mp_str("vote"), b"\x01", mp_str("c"), b"\x03", b"\x00", mp_str("h")]),
            id="str-for-bin",
        ),
        pytest.param(
            mp_array([mp_str("veto"), b"\x01", mp_str("c"), b"\x03", b"\x00", mp_bin(b"h")]),
            id="wrong-tag",
        ),
        pytest.param(
            mp_array([b"\x01", mp_str("c"), b"\x03", b"\x00", mp_bin(b"h")]),
            id="no-tag",
        ),
        pytest.param(
            mp_map([(mp_str("type"), mp_str("vote")), (mp_str("kind"), b"\x01")]),
            id="as-map",
        ),
        pytest.param(
            mp_array([mp_str("vote"), b"\x01", mp_str("c"), b"\x03", b"\x00", mp_bin(b"h"),
                      b"\x00"]),
            id="extra-field",
        ),
        pytest.param(b"\xc1", id="reserved-byte"),
        pytest.param(b"", id="empty"),
    ],
)
def test_wrong_wire_types_are_refused(raw: bytes) -> None:
    assert vote_bytes(GOOD_VOTE) == encode(GOOD_VOTE)
    with pytest.raises(DecodeError):
        decode(raw, Vote)


# --- tags separate kinds --------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(v=votes)
def test_vote_bytes_never_decode_as_header(v: Vote) -> None:
    with pytest.raises(DecodeError):
        decode(encode(v), Header)
    with pytest.raises(DecodeError):
        decode(encode(v), Header, canonical=False)


@settings(max_examples=100, deadline=None)
@given(body=STRATEGIES[TxBody])
def test_txbody_bytes_never_decode_as_vote(body: TxBody) -> None:
    with pytest.raises(DecodeError):
        decode(encode(body), Vote)
    with pytest.raises(DecodeError):
        decode(encode(body), Vote, canonical=False)


@pytest.mark.parametrize("src", ALL_TYPES, ids=TYPE_IDS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_no_kind_decodes_as_another(src: type[msgspec.Struct], data: st.DataObject) -> None:
    raw = encode(data.draw(STRATEGIES[src]))
    for dst in ALL_TYPES:
        if dst is not src:
            with pytest.raises(DecodeError):
                decode(raw, dst)
