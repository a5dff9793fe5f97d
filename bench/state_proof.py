"""State proofs at 10^6 keys (issue 9, targets b and c); not a test, not asserted.

    .venv/bin/python bench/state_proof.py [--keys 1000000] [--batch 5000] [--samples 1000]

1. Builds a state map of ``--keys`` evidence-like keys (``ev/d/`` + 32 random bytes, each
   holding a canonical ``EvidenceRecord`` of about 200 bytes) in a real ``ChainStore``, one
   block per ``--batch`` keys, through ``ChainStore.save_block``: each block's header carries
   the map's root and a commit signed by all four SM2 validators, its writes go to the state
   tables and the map's new nodes to the ``state_map`` table, in one LMDB transaction, as on a
   node. (The blocks hold no transactions: the writes are what a block of deposits writes.)
2. For ``--samples`` present and as many absent keys, builds the state bundle
   (``build_state_bundle``, ``zhongshu-state-proof/1``) against the last block and reports the
   smtproof's bytes, the bytes the bundle carries beside its commit certificate and validator
   set, the whole bundle's, and the time ``verify_state_bundle`` takes per bundle against the
   trusted genesis (the four SM2 signature checks included): the first verification of each
   bundle, and the fastest of three.
3. Reports the ``state_map`` table's LMDB pages per key, and its nodes per key (every block's
   version is kept) beside the nodes of the last version alone.

The figures and the commit of the code measured are written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger import smt
from zhongshu.ledger.evidence_args import EVIDENCE_KEY_PREFIX, EvidenceRecord
from zhongshu.ledger.hashing import (
    compute_block_hash,
    compute_genesis_hash,
    compute_receipt_root,
    compute_tx_root,
    compute_validator_set_hash,
)
from zhongshu.ledger.history import HistoryAccumulator
from zhongshu.ledger.merkle import Hasher
from zhongshu.ledger.proof.state import build_state_bundle, verify_state_bundle
from zhongshu.ledger.types import (
    PRECOMMIT,
    Block,
    ChainParams,
    CommitCertificate,
    CommitSig,
    Genesis,
    Header,
    Validator,
    ValidatorSet,
    Vote,
)
from zhongshu.store.lmdb_store import BlockRecord, ChainStore, StateMapUpdate

ROOT = Path(__file__).resolve().parent.parent
CHAIN_ID = "bench"
GENESIS_TIME = 1_764_633_600_000
BLOCK_MS = 1000
VALIDATORS = 4
VERIFY_REPEATS = 3


@dataclass
class StateProofResult:
    suite: str
    keys: int
    batch: int
    samples: int
    build_seconds: float
    """Building the map block by block: tree apply, header, four signatures, LMDB commit."""
    apply_us_per_key: float
    """Of that, ``SparseMerkleTree.apply`` alone, per key written."""
    proof_bytes: dict[str, dict[str, float]]
    """Per kind (``present``, ``absent``): mean and max of the encoded smtproof."""
    beside_commit_bytes: dict[str, dict[str, float]]
    """Per kind: the raw bytes the bundle carries beside its commit and validator set: key,
    value, smtproof and encoded header."""
    beside_commit_json_bytes: dict[str, dict[str, float]]
    """Per kind: the bundle's compact JSON less the JSON of its ``commit`` and ``validator_set``
    (hex doubles every byte string)."""
    bundle_json_bytes: dict[str, dict[str, float]]
    """Per kind: the whole bundle as compact JSON."""
    verify_ms: dict[str, dict[str, float]]
    """Per kind: ``verify_state_bundle`` against the trusted genesis, mean and p99 (ms) of the
    first verification of each bundle."""
    verify_best_ms: dict[str, dict[str, float]]
    """The same of each bundle's fastest of VERIFY_REPEATS verifications: what is left when the
    other processes of a shared machine do not get in the way."""
    smt_verify_us: float
    """``smt.verify_proof`` alone, mean over all samples (µs)."""
    depth: dict[str, float]
    """Mean and max proof depth over all samples."""
    map_table: dict[str, int]
    """LMDB stat of the ``state_map`` table after the last block."""
    map_bytes_per_key: float
    """(branch + leaf + overflow pages) * page size / keys."""
    map_nodes_per_key: float
    """Nodes stored (every version) / keys."""
    live_nodes_per_key: float
    """Nodes reachable from the last root / keys."""
    other_tables_bytes_per_key: dict[str, float]
    """The ``state`` and ``state_history`` tables, for comparison, and ``state_map_stale`` (the
    stale-node index, empty unless ``heights_kept``)."""
    heights_kept: int = 0
    """``--keep``: the last heights kept provable, the others pruned as a node with
    ``state_heights_kept`` does (0: every height kept)."""
    code: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


class _Chain:
    """Four SM2 (or Ed25519) validators of power 1 and the blocks they sign, as a node stores them."""

    def __init__(self, suite_name: str) -> None:
        self.suite = get_suite(suite_name)
        self.h = self.suite.hasher()
        self.keys = [self.suite.generate_private_key() for _ in range(VALIDATORS)]
        self.vset = ValidatorSet([Validator(k.public_bytes(), 1, f"v{i}") for i, k in enumerate(self.keys)])
        self.genesis = Genesis(CHAIN_ID, suite_name, GENESIS_TIME, self.vset, ChainParams())
        self.vset_hash = compute_validator_set_hash(self.h, self.vset)
        self.last_hash = compute_genesis_hash(self.h, self.genesis)
        self.history = HistoryAccumulator(self.h)
        self.empty_tx_root = compute_tx_root(self.h, [])
        self.empty_receipt_root = compute_receipt_root(self.h, [])

    def make_block(self, height: int, state_root: bytes) -> BlockRecord:
        """Block ``height`` with ``state_root``, committed by every validator in round 0."""
        header = Header(
            chain_id=CHAIN_ID,
            height=height,
            time=GENESIS_TIME + BLOCK_MS * height,
            prev_hash=self.last_hash,
            tx_count=0,
            tx_root=self.empty_tx_root,
            receipt_root=self.empty_receipt_root,
            state_root=state_root,
            history_root=self.history.root(),
            validator_set_hash=self.vset_hash,
            proposer=self.keys[height % VALIDATORS].public_bytes(),
        )
        block_hash = compute_block_hash(self.h, header)
        vote = encode(Vote(PRECOMMIT, CHAIN_ID, height, 0, block_hash))
        commit = CommitCertificate(
            height, 0, block_hash, [CommitSig(k.public_bytes(), k.sign(vote)) for k in self.keys]
        )
        self.last_hash = block_hash
        self.history.append(block_hash)
        return BlockRecord(Block(header, []), block_hash, [], commit)


def _record(digest: bytes, owner: PrivateKey, height: int) -> bytes:
    """A deposit's state value as the evidence contract writes it (about 200 bytes)."""
    record = EvidenceRecord(
        digest=digest,
        name="contract-2026-0417.pdf",
        metadata={},
        payload=b"",
        owner=owner.public_bytes(),
        height=height,
        time=GENESIS_TIME + BLOCK_MS * height,
        tx_hash=os.urandom(32),
    )
    return encode(record)


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.mean(values), 1), "max": round(max(values), 1)}


def _timing(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"mean": round(statistics.mean(values), 3), "p99": round(p99, 3), "max": round(ordered[-1], 3)}


def _json_len(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def _stat(store: ChainStore, txn: Any, name: str) -> dict[str, int]:
    """LMDB's stat of table ``name`` (psize, depth, pages, entries)."""
    raw: Mapping[str, Any] = txn.stat(store.env.open_db(name.encode(), txn=txn))
    return {k: int(v) for k, v in raw.items()}


def _table_bytes(stat: Mapping[str, int]) -> int:
    return (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]) * stat["psize"]


def _code_version() -> dict[str, Any]:
    """The commit measured, and whether smt.py differed from it (another engineer's work)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "smt_py_modified": bool(git("status", "--porcelain", "src/zhongshu/ledger/smt.py")),
    }


def build_map(
    chain: _Chain, store: ChainStore, keys: int, batch: int, progress: Progress, keep: int = 0
) -> tuple[list[bytes], BlockRecord, float, float]:
    """Write ``keys`` deposits, ``batch`` per block; the keys, the last block, build and apply
    seconds. With ``keep``, only the last ``keep`` heights stay, as on a node that prunes."""
    owner = chain.suite.generate_private_key()
    written: list[bytes] = []
    root = smt.PLACEHOLDER
    apply_seconds = 0.0
    last: BlockRecord | None = None
    task = progress.add_task("build map", total=keys)
    started = time.perf_counter()
    for height, first in enumerate(range(0, keys, batch), 1):
        digests = [os.urandom(32) for _ in range(min(batch, keys - first))]
        writes: dict[bytes, bytes | None] = {
            EVIDENCE_KEY_PREFIX + d: _record(d, owner, height) for d in digests
        }
        applied = time.perf_counter()
        with store.state_map_reader() as nodes:
            tree = smt.SparseMerkleTree(chain.h, nodes)
            root, new_nodes, stale = tree.apply_tracked(root, height - 1, writes, height)
        apply_seconds += time.perf_counter() - applied
        last = chain.make_block(height, root)
        update = StateMapUpdate(
            sorted(new_nodes.items()),
            sorted(stale) if keep else (),
            max(0, height - keep + 1) if keep else 0,
        )
        store.save_block(last, [], writes, {"state_root": root}, update)
        written.extend(writes)
        progress.advance(task, len(writes))
    assert last is not None
    return written, last, time.perf_counter() - started, apply_seconds


def measure_proofs(
    chain: _Chain, store: ChainStore, last: BlockRecord, keys: list[bytes], samples: int, progress: Progress
) -> dict[str, Any]:
    """Bundles of ``samples`` present and absent keys at the last block: sizes and verify times."""
    root = last.block.header.state_root
    chosen = {
        "present": random.sample(keys, samples),
        "absent": [EVIDENCE_KEY_PREFIX + os.urandom(32) for _ in range(samples)],
    }
    sizes: dict[str, dict[str, list[float]]] = {}
    verify_ms: dict[str, list[float]] = {}
    best_ms: dict[str, list[float]] = {}
    smt_us: list[float] = []
    depths: list[float] = []
    task = progress.add_task("prove+verify", total=2 * samples)
    for kind, kind_keys in chosen.items():
        sizes[kind] = {"proof": [], "beside": [], "beside_json": [], "bundle": []}
        verify_ms[kind] = []
        best_ms[kind] = []
        for key in kind_keys:
            with store.state_map_reader() as nodes:
                proof = smt.SparseMerkleTree(chain.h, nodes).prove(root, last.block.header.height, key)
            value = store.get_state(key)
            if (value is None) != (kind == "absent"):
                raise RuntimeError(f"the store disagrees with the sample: {key.hex()} is not {kind}")
            bundle = build_state_bundle(
                chain.genesis.suite, key, value, proof, last.block, last.commit, chain.vset
            )
            proof_bytes = smt.encode_proof(proof)
            header_bytes = encode(last.block.header)
            whole = _json_len(bundle)
            sizes[kind]["proof"].append(len(proof_bytes))
            sizes[kind]["beside"].append(len(key) + len(value or b"") + len(proof_bytes) + len(header_bytes))
            sizes[kind]["beside_json"].append(
                whole - _json_len(bundle["commit"]) - _json_len(bundle["validator_set"])
            )
            sizes[kind]["bundle"].append(whole)
            depths.append(proof.depth)
            started = time.perf_counter()
            ok = smt.verify_proof(chain.h, root, key, value, proof)
            smt_us.append((time.perf_counter() - started) * 1e6)
            times = []
            for _ in range(VERIFY_REPEATS):
                started = time.perf_counter()
                verified = verify_state_bundle(bundle, trusted=chain.genesis)
                times.append((time.perf_counter() - started) * 1e3)
            verify_ms[kind].append(times[0])
            best_ms[kind].append(min(times))
            if not ok or verified.value != value:
                raise RuntimeError(f"the bundle of {key.hex()} did not verify as built")
            progress.advance(task)
    return {
        "proof_bytes": {k: _stats(v["proof"]) for k, v in sizes.items()},
        "beside_commit_bytes": {k: _stats(v["beside"]) for k, v in sizes.items()},
        "beside_commit_json_bytes": {k: _stats(v["beside_json"]) for k, v in sizes.items()},
        "bundle_json_bytes": {k: _stats(v["bundle"]) for k, v in sizes.items()},
        "verify_ms": {k: _timing(v) for k, v in verify_ms.items()},
        "verify_best_ms": {k: _timing(v) for k, v in best_ms.items()},
        "smt_verify_us": round(statistics.mean(smt_us), 1),
        "depth": {"mean": round(statistics.mean(depths), 1), "max": max(depths)},
    }


def count_live_nodes(store: ChainStore, h: Hasher, root: bytes, version: int, progress: Progress) -> int:
    """Nodes reachable from ``root`` stored under ``version`` (the last version's tree)."""
    task = progress.add_task("walk root", total=None)
    count = 0
    pending = [] if root == smt.PLACEHOLDER else [smt.node_key(version, root)]
    with store.state_map_reader() as nodes:
        tree = smt.SparseMerkleTree(h, nodes)
        while pending:
            node = tree.get_node(pending.pop())
            count += 1
            pending.extend(smt.get_child_keys(node))
            if count % 100_000 == 0:
                progress.update(task, completed=count)
    progress.update(task, total=count, completed=count)
    return count


def measure_storage(store: ChainStore, keys: int) -> dict[str, Any]:
    """The ``state_map`` table's LMDB stat, and the state tables' bytes per key beside it."""
    with store.env.begin() as txn:
        names = ("state_map", "state", "state_history", "state_map_stale")
        stats = {name: _stat(store, txn, name) for name in names}
    table = stats["state_map"]
    return {
        "map_table": table,
        "map_bytes_per_key": round(_table_bytes(table) / keys, 1),
        "map_nodes_per_key": round(table["entries"] / keys, 2),
        "other_tables_bytes_per_key": {
            name: round(_table_bytes(stats[name]) / keys, 1) for name in names[1:]
        },
    }


def run(
    keys: int, batch: int, samples: int, suite: str, data_dir: Path, console: Console, keep: int = 0
) -> StateProofResult:
    chain = _Chain(suite)
    columns = (TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # No fsync per block: the figures are of the tree and its table, not of the disk's flushes.
    store = ChainStore(data_dir, sync=False)
    try:
        with Progress(*columns, console=console) as progress:
            written, last, build_s, apply_s = build_map(chain, store, keys, batch, progress, keep)
            proofs = measure_proofs(chain, store, last, written, samples, progress)
            header = last.block.header
            live = count_live_nodes(store, chain.h, header.state_root, header.height, progress)
        storage = measure_storage(store, keys)
    finally:
        store.close()
    return StateProofResult(
        suite=suite,
        keys=keys,
        batch=batch,
        samples=samples,
        build_seconds=round(build_s, 1),
        apply_us_per_key=round(apply_s / keys * 1e6, 1),
        live_nodes_per_key=round(live / keys, 2),
        heights_kept=keep,
        code=_code_version(),
        machine={
            "cores": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        **proofs,
        **storage,
    )


def render(r: StateProofResult, console: Console) -> None:
    table = Table(title=f"state proofs: {r.keys:,} keys ({r.suite}), {r.samples:,} samples of each kind")
    table.add_column("measure")
    table.add_column("present", justify="right")
    table.add_column("absent", justify="right")
    table.add_column("target", justify="right")

    def row(
        label: str, figures: dict[str, dict[str, float]], a: str, b: str, unit: str, target: str = ""
    ) -> None:
        cells = [f"{figures[k][a]:,.1f} / {figures[k][b]:,.1f} {unit}" for k in ("present", "absent")]
        table.add_row(label, *cells, target)

    row("smtproof, mean / max", r.proof_bytes, "mean", "max", "B")
    row(
        "beside the commit (key, value, proof, header), mean / max",
        r.beside_commit_bytes,
        "mean",
        "max",
        "B",
        "< 2 KiB",
    )
    row("… as the bundle's JSON, mean / max", r.beside_commit_json_bytes, "mean", "max", "B")
    row("whole bundle, JSON, mean / max", r.bundle_json_bytes, "mean", "max", "B")
    row("verify_state_bundle, mean / p99", r.verify_ms, "mean", "p99", "ms", "< 5 ms")
    row(
        f"… fastest of {VERIFY_REPEATS} per bundle, mean / p99",
        r.verify_best_ms,
        "mean",
        "p99",
        "ms",
        "< 5 ms",
    )
    console.print(table)
    console.print(
        f"smt.verify_proof alone {r.smt_verify_us:.0f} µs; depth {r.depth['mean']:.1f} mean, "
        f"{r.depth['max']:.0f} max; built in {r.build_seconds:.0f} s "
        f"(apply {r.apply_us_per_key:.1f} µs per key)\n"
        f"state_map table: {r.map_bytes_per_key:.0f} B per key ({r.map_table['entries']:,} nodes, "
        f"{r.map_nodes_per_key:.2f} per key, "
        + (f"the last {r.heights_kept} heights kept" if r.heights_kept else f"all {r.keys // r.batch} versions")
        + f"; the last version alone {r.live_nodes_per_key:.2f} per key); stale-node index "
        f"{r.other_tables_bytes_per_key['state_map_stale']:.0f} B, state "
        f"{r.other_tables_bytes_per_key['state']:.0f} B, "
        f"state_history {r.other_tables_bytes_per_key['state_history']:.0f} B per key",
        highlight=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="keys written per block")
    parser.add_argument("--samples", type=int, default=1000, help="present keys, and as many absent")
    parser.add_argument("--suite", choices=["sm", "intl"], default="sm")
    parser.add_argument(
        "--data", type=Path, help="an empty directory for the store (default: a temporary one)"
    )
    parser.add_argument(
        "--keep", type=int, default=0, help="keep the last N heights provable, prune the rest (0: all)"
    )
    args = parser.parse_args()
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="zhongshu-state-proof-") as tmp:
        data = args.data or Path(tmp) / "data"
        result = run(args.keys, args.batch, args.samples, args.suite, data, console, args.keep)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = out_dir / f"state-proof-{result.suite}-{result.keys}-{stamp}.json"
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
    render(result, console)
    console.print(f"saved {path}", highlight=False)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
