"""docs/state-layout.md stays true: every key a contract writes is in its table, with its value.

Every method of every registered contract runs through the executor (a business chain's
deposits, then the hub chain's life: init, organizations, members, an app and its key, a chain).
Each written key must match exactly one row of the page's key table and its value must decode,
canonically, as the struct that row names; every row must be written at least once; every
``state.set(``/``state.delete(`` call site under ``contracts/`` and ``hub/`` must have run; the
struct table's tags and field order are the code's; the worked example is what
``evidence.digest_key`` and the executor give. The Chinese page carries the same tables.
"""

from __future__ import annotations

import importlib
import re
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from zhongshu.codec import decode, encode
from zhongshu.contracts import evidence
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.execution.context import TxState
from zhongshu.execution.executor import apply_transactions
from zhongshu.execution.registry import Contract, Registry
from zhongshu.hub.chains import ChainCreate, ChainStop
from zhongshu.hub.factory import HUB_CHAIN, HUB_REGISTRY
from zhongshu.hub.registry import AppDisable, AppRegister, AppRotateKey, Grant, HubInit, Quota, hub_contracts
from zhongshu.hub.roles import MemberAdd, NodeKeys, OrgCreate, OrgDisable
from zhongshu.ledger.evidence_args import EvidencePut, EvidenceRecord
from zhongshu.ledger.hashing import compute_genesis_hash, compute_tx_hash
from zhongshu.ledger.types import STATUS_OK, ChainParams, Genesis, Transaction, Validator, ValidatorSet
from zhongshu.node.verifier import DEFAULT_REGISTRY
from zhongshu.sdk.tx import sign_tx

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "docs" / "state-layout.md", ROOT / "docs" / "zh" / "state-layout.md"]
CONTRACT_DIRS = [ROOT / "src" / "zhongshu" / "contracts", ROOT / "src" / "zhongshu" / "hub"]
WRITE_CALL = re.compile(r"\bstate\.(?:set|delete)\(")
SM = get_suite("sm")
INTL = get_suite("intl")
TIME = 1_700_000_000_000


# -- the page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    pattern: str
    """The key as the page writes it, e.g. ``ev/d/<digest>``."""
    value: str | None
    """The struct its value is, or None for a raw value."""

    @property
    def literal(self) -> bytes:
        """The ASCII bytes before the first ``<``: a prefix, or the whole key."""
        return self.pattern.split("<", 1)[0].encode()

    @property
    def exact(self) -> bool:
        return "<" not in self.pattern

    def matches(self, key: bytes) -> bool:
        if self.exact:
            return key == self.literal
        return key.startswith(self.literal) and len(key) > len(self.literal)


@dataclass(frozen=True)
class StructRow:
    name: str
    module: str
    tag: str | None
    fields: list[str]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_page(text: str) -> tuple[list[KeyRow], dict[str, StructRow]]:
    """The key table's rows and the struct table's rows of a state-layout page."""
    keys: list[KeyRow] = []
    structs: dict[str, StructRow] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = _cells(line)
        key = re.fullmatch(r"`([a-z]+/[^`]*)`", cells[0])
        struct = re.fullmatch(r"`(\w+)` \(`([\w.]+)`\)", cells[0])
        if key:
            value = re.match(r"`(\w+)`", cells[2])
            keys.append(KeyRow(key.group(1), value.group(1) if value else None))
        elif struct:
            tag = re.fullmatch(r"`([\w.-]+)`", cells[1])
            fields = re.findall(r"`(\w+)`", cells[2])
            structs[struct.group(1)] = StructRow(
                struct.group(1), struct.group(2), tag.group(1) if tag else None, fields
            )
    return keys, structs


def _page(path: Path = PAGES[0]) -> str:
    return path.read_text(encoding="utf-8")


# -- running every contract method -------------------------------------------------------


@dataclass
class Written:
    """What the contracts wrote, where from, and which methods succeeded."""

    writes: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)
    """(chain id, key, value or None for a delete), every write of every committed block."""
    call_sites: set[tuple[str, int]] = field(default_factory=set)
    """(file relative to the repository, line) of every ``state.set``/``state.delete`` that ran."""
    methods: set[tuple[str, str]] = field(default_factory=set)
    """(contract, method) of every transaction that succeeded."""


@dataclass
class Chain:
    """A chain on a dict: ``block`` runs transactions through the executor as one block."""

    chain_id: str
    registry: Registry
    genesis_hash: bytes
    log: Written
    state: dict[bytes, bytes] = field(default_factory=dict)
    height: int = 0
    nonce: int = 0

    def sign(self, key: PrivateKey, contract: str, method: str, args: Any) -> Transaction:
        self.nonce += 1
        return sign_tx(key, self.chain_id, self.genesis_hash, contract, method, args, 10_000, self.nonce)

    def block(self, txs: list[Transaction], hashes: list[bytes] | None = None, height: int = 0) -> None:
        """Commit ``txs`` as block ``height`` (default: the next); every one must succeed."""
        self.height = height or self.height + 1
        hashes = hashes or [compute_tx_hash(SM.hash, tx) for tx in txs]
        outcome = apply_transactions(
            self.registry, self.state.get, self.chain_id, self.height, TIME, txs, hashes
        )
        for tx, receipt in zip(txs, outcome.receipts, strict=True):
            assert receipt.status == STATUS_OK, (tx.contract, tx.method, receipt.error)
            self.log.methods.add((tx.contract, tx.method))
        for key, value in outcome.writes.items():
            self.log.writes.append((self.chain_id, key, value))
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value

    def call(self, key: PrivateKey, contract: str, method: str, args: Any) -> None:
        self.block([self.sign(key, contract, method, args)])


def _build(spec: str, genesis: Genesis) -> Registry:
    module, function = spec.split(":")
    build: Callable[[Genesis], Registry] = getattr(importlib.import_module(module), function)
    return build(genesis)


def _genesis(chain_id: str, validator: bytes) -> Genesis:
    return Genesis(chain_id, "sm", TIME, ValidatorSet([Validator(validator, 1, "node0")]), ChainParams())


def _example_deposit(chain: Chain, depositor: PrivateKey) -> None:
    """The page's worked example: SM3("abc") named a.pdf, third transaction of block 7, by the
    key 04...04 in the transaction 11...11 (the executor checks no signature: its input is a
    block whose transactions were verified before)."""
    fillers = [
        chain.sign(depositor, "evidence", "put", EvidencePut(SM.hash(bytes([i])), "x")) for i in (1, 2)
    ]
    example = Transaction(
        chain.chain_id,
        chain.genesis_hash,
        b"\x04" * 65,
        "evidence",
        "put",
        encode(EvidencePut(SM.hash(b"abc"), "a.pdf")),
        10_000,
        0,
        b"",
    )
    hashes = [compute_tx_hash(SM.hash, tx) for tx in fillers] + [b"\x11" * 32]
    chain.block([*fillers, example], hashes, height=7)


def run_every_method(log: Written) -> None:
    """Every method of every contract a chain can run, each committed at least once."""
    # A business chain: deposits, one of them the page's worked example, and a repeat (no write).
    user = SM.generate_private_key()
    genesis = _genesis("main", SM.generate_private_key().public_bytes())
    main = Chain("main", _build(DEFAULT_REGISTRY, genesis), compute_genesis_hash(SM.hash, genesis), log)
    main.call(user, "evidence", "put", EvidencePut(SM.hash(b"file"), "file.txt", {"k": "v"}, b"payload"))
    main.call(user, "evidence", "put", EvidencePut(SM.hash(b"file"), "again"))
    _example_deposit(main, user)
    # The hub chain: init by the genesis's first validator, then each of its methods.
    node_key = SM.generate_private_key()
    node = NodeKeys("node0", node_key.public_bytes(), INTL.generate_private_key().public_bytes())
    genesis = _genesis(HUB_CHAIN, node.sm_key)
    hub = Chain(HUB_CHAIN, _build(HUB_REGISTRY, genesis), compute_genesis_hash(SM.hash, genesis), log)
    operator, admin, second, regulator, app, rotated = (SM.generate_private_key() for _ in range(6))
    hub.call(node_key, "hub", "init", HubInit(operator.public_bytes(), [node]))
    hub.call(operator, "hub.org", "create", OrgCreate("gov", "市政府", [admin.public_bytes()]))
    hub.call(operator, "hub.member", "add", MemberAdd(regulator.public_bytes(), "gov", "regulator"))
    hub.call(admin, "hub.member", "add", MemberAdd(second.public_bytes(), "gov", "org-admin"))
    params = ChainParams(200, 1000, 1024 * 1024, 64 * 1024)
    hub.call(operator, "hub.chain", "create", ChainCreate("court", "sm", ["node0"], params, ["gov"]))
    grants = [Grant("court", "evidence", ["put"])]
    register = AppRegister("gov", "filer", app.public_bytes(), grants, Quota(5, 100))
    hub.call(admin, "hub.app", "register", register)
    (app_id,) = (k[len(b"hub/a/") :].decode() for _, k, _ in log.writes if k.startswith(b"hub/a/"))
    hub.call(app, "hub.app", "rotate-key", AppRotateKey(app_id, rotated.public_bytes()))
    hub.call(regulator, "hub.app", "disable", AppDisable(app_id))
    hub.call(operator, "hub.chain", "stop", ChainStop("court"))
    hub.call(operator, "hub.org", "disable", OrgDisable("gov"))
    hub.call(operator, "evidence", "put", EvidencePut(SM.hash(b"on the hub"), "hub.txt"))


@pytest.fixture(scope="module")
def written() -> Iterator[Written]:
    """Run every method once, recording each write's key, value and call site."""
    log = Written()
    original_set, original_delete = TxState.set, TxState.delete

    def site() -> None:
        frame = sys._getframe(2)
        path = Path(frame.f_code.co_filename).resolve()
        if path.is_relative_to(ROOT):
            log.call_sites.add((path.relative_to(ROOT).as_posix(), frame.f_lineno))

    def set_(self: TxState, key: bytes, value: bytes) -> None:
        site()
        original_set(self, key, value)

    def delete(self: TxState, key: bytes) -> None:
        site()
        original_delete(self, key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TxState, "set", set_)
        patch.setattr(TxState, "delete", delete)
        run_every_method(log)
    yield log


# -- the checks --------------------------------------------------------------------------


def test_every_written_key_is_one_documented_row_and_its_value_that_struct(written: Written) -> None:
    rows, structs = parse_page(_page())
    assert rows and structs, "the page's key and struct tables were not found"
    for chain, key, value in written.writes:
        matching = [r.pattern for r in rows if r.matches(key)]
        assert len(matching) == 1, f"{chain}: key {key!r} matches {matching or 'no row'} of the page"
        (row,) = (r for r in rows if r.matches(key))
        # No contract deletes (the page says so).
        assert value is not None, f"{chain}: {key!r} was deleted"
        if row.value is not None:
            info = structs[row.value]
            kind = getattr(importlib.import_module(info.module), info.name)
            decode(value, kind)


def test_every_documented_key_is_written(written: Written) -> None:
    rows, _ = parse_page(_page())
    for row in rows:
        assert any(row.matches(key) for _, key, _ in written.writes), f"nothing wrote {row.pattern}"


def test_every_write_call_site_ran(written: Written) -> None:
    sites = set()
    for directory in CONTRACT_DIRS:
        for path in sorted(directory.rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if WRITE_CALL.search(line):
                    sites.add((path.relative_to(ROOT).as_posix(), number))
    assert len(sites) >= 10
    missed = sorted(sites - written.call_sites)
    assert not missed, f"state writes this test never ran (add them here and to the page): {missed}"


def test_every_method_of_every_registered_contract_ran(written: Written) -> None:
    genesis = _genesis(HUB_CHAIN, SM.generate_private_key().public_bytes())
    known: list[Contract] = [evidence.CONTRACT, *hub_contracts(genesis)]
    for spec in (DEFAULT_REGISTRY, HUB_REGISTRY):
        names = _build(spec, genesis).names()
        assert set(names) <= {c.name for c in known}, f"{spec} registers a contract this test does not run"
    every = {(c.name, m) for c in known for m in c.methods}
    assert every == written.methods, sorted(every ^ written.methods)


def _nested_structs(kind: Any) -> Iterator[type]:
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        yield kind
    for arg in typing.get_args(kind):
        yield from _nested_structs(arg)


def test_struct_table_is_the_code() -> None:
    rows, structs = parse_page(_page())
    for info in structs.values():
        kind = getattr(importlib.import_module(info.module), info.name)
        assert kind.__struct_config__.tag == info.tag, info.name
        assert kind.__struct_config__.array_like, info.name
        fields = msgspec.structs.fields(kind)
        assert [f.name for f in fields] == info.fields, info.name
        # Every struct a documented value holds is documented too.
        for f in fields:
            for inner in _nested_structs(f.type):
                assert inner.__name__ in structs, f"{info.name}.{f.name}: {inner.__name__} is not in the page"
    assert {r.value for r in rows if r.value} <= set(structs)


def test_the_chinese_page_has_the_same_tables() -> None:
    english, chinese = (parse_page(_page(p)) for p in PAGES)
    assert english == chinese


def _example_values(text: str) -> dict[str, str]:
    """The worked example's ``name = hex`` lines."""
    return dict(re.findall(r"^(digest|key|path|record) += ([0-9a-f]+)$", text, re.MULTILINE))


def test_worked_example(written: Written) -> None:
    text = _page()
    shown = _example_values(text)
    digest = SM.hash(b"abc")
    key = evidence.digest_key(digest)
    assert shown["digest"] == digest.hex()
    assert shown["key"] == key.hex()
    assert shown["path"] == SM.hash(key).hex()
    assert f"/v1/chains/main/state/{key.hex()}?" in text
    assert f"/v1/chains/main/evidence/{digest.hex()}?" in text
    # The executor wrote exactly the example's record under that key, and no owner index key
    # (deposits by owner are the node's index, not state).
    values = {k: v for chain, k, v in written.writes if chain == "main" and v is not None}
    assert values[key] == bytes.fromhex(shown["record"])
    assert decode(values[key], EvidenceRecord) == EvidenceRecord(
        digest, "a.pdf", {}, b"", b"\x04" * 65, 7, TIME, b"\x11" * 32
    )
    assert not any(k.startswith(b"ev/o/") for k in values)
    assert _example_values(_page(PAGES[1])) == shown
