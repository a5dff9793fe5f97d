"""Fuzzing the verifier: any input ends as a valid proof or as ProofInvalid with a reason, nothing else.

Arbitrary JSON-like values, real bundles with one part replaced by such a value, and the bytes of
real bundles with some bytes changed, go through ``load_bundle`` and ``verify_bundle``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_proof import Chain, make_chain, roundtrip
from zhongshu.ledger.proof import FORMAT, ProofInvalid, load_bundle, verify_bundle

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text with the odd cases: lone surrogates, NUL, non-BMP, hex-looking strings.
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.one_of(
    st.text(max_size=20),
    st.text(st.one_of(st.characters(), surrogates), max_size=8),
    st.text("0123456789abcdefABCDEF", max_size=140),
    st.sampled_from([FORMAT, "sm", "intl", "", "zhongshu-proof/1"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(texts, inner, max_size=5)),
    max_leaves=25,
)

BUNDLES: dict[str, list[dict[str, Any]]] = {}


def real_bundles() -> list[dict[str, Any]]:
    """Plain and anchored bundles of both suites (built once)."""
    if not BUNDLES:
        for suite in ("sm", "intl"):
            chain: Chain = make_chain(suite)
            BUNDLES[suite] = [
                roundtrip(chain.bundle(3, 1)),
                roundtrip(chain.bundle(2, 1, anchor=5)),
                roundtrip(chain.bundle(3, 2)),
            ]
    return [b for bundles in BUNDLES.values() for b in bundles]


def places(node: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value inside ``node`` (the root excluded)."""
    out: list[tuple[str | int, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append((*path, key))
        out.extend(places(value, (*path, key)))
    return out


def outcome(bundle: Any) -> str:
    """'valid' or 'invalid'; anything but ProofInvalid escapes and fails the test."""
    try:
        verify_bundle(bundle, trusted=None)
    except ProofInvalid as exc:
        assert exc.reason and "\n" not in exc.reason
        exc.reason.encode("utf-8")
        return "invalid"
    return "valid"


def test_the_real_bundles_verify() -> None:
    assert {outcome(copy.deepcopy(b)) for b in real_bundles()} == {"valid"}


@FUZZ
@given(json_values)
def test_any_json_value_is_a_bundle_or_proof_invalid(value: Any) -> None:
    outcome(value)


@FUZZ
@given(st.dictionaries(texts, json_values, max_size=12), st.sampled_from(["sm", "intl"]))
def test_any_object_of_the_format_is_a_bundle_or_proof_invalid(value: dict[str, Any], suite: str) -> None:
    outcome({**value, "format": FORMAT, "suite": suite})


@FUZZ
@given(st.data())
def test_a_real_bundle_with_a_part_replaced_is_a_bundle_or_proof_invalid(data: st.DataObject) -> None:
    bundle = copy.deepcopy(data.draw(st.sampled_from(real_bundles())))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(places(bundle)))
        parent = bundle
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()):
            parent[path[-1]] = data.draw(json_values)
        elif isinstance(parent, dict):
            parent[data.draw(texts)] = data.draw(json_values)
        else:
            parent.insert(data.draw(st.integers(0, len(parent))), data.draw(json_values))
    outcome(bundle)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_are_json_or_proof_invalid(data: bytes) -> None:
    try:
        value = load_bundle(data)
    except ProofInvalid as exc:
        exc.reason.encode("utf-8")
        return
    outcome(value)


@FUZZ
@given(st.data())
def test_the_text_of_a_real_bundle_with_bytes_changed_is_a_bundle_or_proof_invalid(
    data: st.DataObject,
) -> None:
    text = bytearray(json.dumps(data.draw(st.sampled_from(real_bundles()))).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text) - 1))
        text[at : at + data.draw(st.integers(0, 3))] = data.draw(st.binary(min_size=0, max_size=3))
    try:
        value = load_bundle(bytes(text))
    except ProofInvalid:
        return
    outcome(value)


@pytest.mark.parametrize(
    "text",
    [
        '{"format": "zhongshu-proof/2", "suite": "\\ud800"}',
        '{"format": "zhongshu-proof/2", "suite": "sm", "chain_id": "\\udfff"}',
        '{"format": "\\ud83d"}',
    ],
)
def test_lone_surrogates_from_json_loads_are_proof_invalid(text: str) -> None:
    # The value as Python's own json module reads it, given straight to the verifier.
    assert outcome(json.loads(text)) == "invalid"


def string_places(node: Any) -> list[tuple[str | int, ...]]:
    """Every path to a string value or to an object (where a key can be added)."""
    return [p for p in [(), *places(node)] if isinstance(_at(node, p), str | dict)]


def _at(node: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


@FUZZ
@given(st.data())
def test_a_lone_surrogate_anywhere_in_a_real_bundle_is_proof_invalid(data: st.DataObject) -> None:
    bundle = copy.deepcopy(data.draw(st.sampled_from(real_bundles())))
    path = data.draw(st.sampled_from(string_places(bundle)))
    text = data.draw(st.text(max_size=4))
    odd = text + data.draw(surrogates) + text
    target = _at(bundle, path)
    if isinstance(target, dict):
        target[odd] = data.draw(json_values)
    else:
        _at(bundle, path[:-1])[path[-1]] = odd
    assert outcome(bundle) == "invalid"
