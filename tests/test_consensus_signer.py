"""The signers' guard on disk, what reaches the disk before a signature leaves, and the WAL.

Both signers (the single validator's ``Signer``, the BFT ``ConsensusSigner``) and the WAL are
checked with a spy on ``os.fsync``: the bytes on the right file, at the moment of the fsync,
are what the signer or the WAL later relies on, and the fsync comes before the signature is
returned. A failing fsync releases no signature.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from zhongshu.codec import decode, encode
from zhongshu.consensus.guard import LastSigned
from zhongshu.consensus.messages import (
    BlockData,
    EngineAction,
    EngineInput,
    Proposal,
    StartHeight,
    Step,
    TimeoutFired,
)
from zhongshu.consensus.tendermint import TendermintEngine
from zhongshu.crypto import get_suite
from zhongshu.ledger.types import PRECOMMIT, PREVOTE, Validator, ValidatorSet, Vote
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.signer import DoubleSignRefused, Signer
from zhongshu.node.wal import WriteAheadLog


def test_signer_reuses_refuses_and_survives_a_restart(tmp_path: Path) -> None:
    suite = get_suite("sm")
    key = suite.generate_private_key()
    path = tmp_path / "signer.bin"
    signer = ConsensusSigner(key, path)
    vote = Vote(PREVOTE, "main", 5, 0, b"\x01" * 32)
    first = signer.sign(vote)
    assert suite.verify(key.public_bytes(), encode(vote), first)
    # The same message again: the stored signature, byte for byte (SM2 is randomised).
    assert signer.sign(vote) == first
    # Another block at the same position is a double sign.
    with pytest.raises(DoubleSignRefused):
        signer.sign(Vote(PREVOTE, "main", 5, 0, b"\x02" * 32))
    # Later positions are fine; earlier ones are refused, also after a restart.
    later = Vote(PRECOMMIT, "main", 5, 0, b"\x01" * 32)
    signer.sign(later)
    restarted = ConsensusSigner(key, path)
    with pytest.raises(DoubleSignRefused):
        restarted.sign(vote)
    with pytest.raises(DoubleSignRefused):
        restarted.sign(Vote(PRECOMMIT, "main", 5, 0, b""))
    proposal = Proposal("main", 6, 0, b"\x03" * 32, -1, key.public_bytes())
    assert suite.verify(key.public_bytes(), encode(proposal), restarted.sign(proposal))


def test_wal_round_trip_and_torn_tail(tmp_path: Path) -> None:
    key = get_suite("intl").generate_private_key()
    vset = ValidatorSet([Validator(key.public_bytes(), 1, "v")])
    wal = WriteAheadLog(tmp_path / "c.wal")
    records = [StartHeight(3, vset), BlockData(3, b"\x09" * 32, True), TimeoutFired(3, 0, 1)]
    for r in records:
        wal.append(r)
    assert wal.read() == records
    wal.close()
    # A crash in the middle of an append leaves a torn record: it is dropped, the rest kept.
    with open(tmp_path / "c.wal", "ab") as f:
        f.write(b"\x00\x00\x00\x40partial")
    wal = WriteAheadLog(tmp_path / "c.wal")
    assert wal.read() == records
    # New records follow the last good one, not the torn bytes.
    wal.append(TimeoutFired(3, 1, 0))
    assert wal.read() == [*records, TimeoutFired(3, 1, 0)]
    wal.reset()
    assert wal.read() == []
    wal.close()


# --- the last record of the WAL, at every cut -----------------------------------------------


def _records(vset: ValidatorSet) -> list[EngineInput]:
    return [
        StartHeight(3, vset),
        BlockData(3, b"\x09" * 32, True),
        TimeoutFired(3, 0, 1),
        TimeoutFired(3, 0, 2),
    ]


def read_wal(path: Path) -> list[EngineInput]:
    """Open the WAL as a restarting node does and read every record."""
    wal = WriteAheadLog(path)
    try:
        return wal.read()
    finally:
        wal.close()


def test_wal_keeps_its_last_record_and_drops_it_at_every_cut(tmp_path: Path) -> None:
    """The last complete record is always read back; cut anywhere inside, it alone is dropped."""
    key = get_suite("intl").generate_private_key()
    records = _records(ValidatorSet([Validator(key.public_bytes(), 1, "v")]))
    path = tmp_path / "full.wal"
    wal = WriteAheadLog(path)
    for r in records:
        wal.append(r)
    # Read back while still open, as after a kill -9: every record, the last one included.
    assert read_wal(path) == records
    wal.close()
    raw = path.read_bytes()
    last = len(encode(records[-1])) + 4
    assert read_wal(path) == records
    for cut in range(1, last + 1):
        torn = tmp_path / f"cut-{cut}.wal"
        torn.write_bytes(raw[:-cut])
        reopened = WriteAheadLog(torn)
        assert reopened.read() == records[:-1], f"cut {cut} bytes into the last record"
        # The next append follows the last good record, and is itself read back.
        reopened.append(TimeoutFired(3, 1, 0))
        assert read_wal(torn) == [*records[:-1], TimeoutFired(3, 1, 0)], f"cut {cut}"
        reopened.close()


def test_wal_replay_feeds_the_engine_its_last_record(tmp_path: Path) -> None:
    """Replaying the WAL rebuilds the engine that handled every input, the last one included."""
    keys = [get_suite("intl").generate_private_key().public_bytes() for _ in range(4)]
    vset = ValidatorSet([Validator(k, 1, f"v{i}") for i, k in enumerate(keys)])
    # The last input is the one that moves the engine: the propose timeout makes it prevote nil.
    inputs: list[EngineInput] = [StartHeight(1, vset), TimeoutFired(1, 0, int(Step.PROPOSE))]
    live = TendermintEngine("main", keys[0])
    wal = WriteAheadLog(tmp_path / "c.wal")
    live_actions: list[list[EngineAction]] = []
    for event in inputs:
        wal.append(event)
        live_actions.append(live.handle(event))
    wal.close()
    replayed = TendermintEngine("main", keys[0])
    records = read_wal(tmp_path / "c.wal")
    assert [replayed.handle(r) for r in records] == live_actions
    assert replayed.get_state() == live.get_state()
    assert replayed.get_state().step == Step.PREVOTE


# --- the single validator's signer ----------------------------------------------------------


def test_solo_signer_refuses_another_block_where_it_signed_and_reuses_its_signature(tmp_path: Path) -> None:
    suite = get_suite("sm")
    key = suite.generate_private_key()
    path = tmp_path / "signer_state.json"
    signer = Signer(key, path)
    vote = Vote(PRECOMMIT, "main", 7, 0, b"\x01" * 32)
    first = signer.sign_vote(vote)
    assert suite.verify(key.public_bytes(), encode(vote), first)
    # The same bytes again: the stored signature (SM2 is randomised: a re-sign would differ).
    assert signer.sign_vote(vote) == first
    # Another block, or no block, at the signed position: a double sign.
    for other in (b"\x02" * 32, b""):
        with pytest.raises(DoubleSignRefused, match="conflicting"):
            signer.sign_vote(Vote(PRECOMMIT, "main", 7, 0, other))
    # The same after a restart from the file alone.
    restarted = Signer(key, path)
    assert restarted.sign_vote(vote) == first
    with pytest.raises(DoubleSignRefused, match="conflicting"):
        restarted.sign_vote(Vote(PRECOMMIT, "main", 7, 0, b"\x02" * 32))
    # Going back is refused; going forward signs and moves the guard.
    with pytest.raises(DoubleSignRefused, match="older"):
        restarted.sign_vote(Vote(PRECOMMIT, "main", 6, 3, b"\x01" * 32))
    later = Vote(PRECOMMIT, "main", 8, 0, b"\x03" * 32)
    assert suite.verify(key.public_bytes(), encode(later), restarted.sign_vote(later))
    with pytest.raises(DoubleSignRefused):
        Signer(key, path).sign_vote(vote)


# --- fsync before the signature leaves ------------------------------------------------------


class FsyncSpy:
    """Records, for each fsync, the file's path and its bytes at that moment; can fail them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> None:
        self.synced: list[tuple[Path, bytes]] = []
        self.events: list[str] = []
        self.fail = fail
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
            if path.is_dir():
                # The directory, so that the rename into it is on disk too.
                self.events.append("fsync dir")
                real_fsync(fd)
                return
            self.synced.append((path, path.read_bytes()))
            self.events.append(f"fsync {path.name}")
            if self.fail:
                raise OSError(5, "injected I/O error")
            real_fsync(fd)

        def replace(src: str | Path, dst: str | Path) -> None:
            self.events.append(f"replace {Path(src).name} {Path(dst).name}")
            real_replace(src, dst)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def returns(self, sign: Callable[[], bytes]) -> bytes:
        """Call ``sign`` and note when it returned."""
        signature = sign()
        self.events.append("returned")
        return signature


def test_consensus_signer_syncs_its_guard_before_releasing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = get_suite("sm").generate_private_key()
    path = tmp_path / "signer.bin"
    signer = ConsensusSigner(key, path)
    spy = FsyncSpy(monkeypatch)
    vote = Vote(PREVOTE, "main", 5, 1, b"\x01" * 32)
    signature = spy.returns(lambda: signer.sign(vote))
    # (SM2 is randomised: the signature returned must be the one stored, not a second one.)
    # The guard's bytes were synced (in the file renamed over the state) before the return.
    assert spy.events == ["fsync signer.tmp", "replace signer.tmp signer.bin", "fsync dir", "returned"]
    ((synced_path, synced_bytes),) = spy.synced
    assert synced_path == path.with_suffix(".tmp")
    assert synced_bytes == path.read_bytes()
    assert decode(synced_bytes, LastSigned) == LastSigned(5, 1, PREVOTE, encode(vote), signature)
    # Asking again for the same bytes releases the stored signature and writes nothing.
    assert spy.returns(lambda: signer.sign(vote)) == signature
    assert spy.events[4:] == ["returned"]


def test_consensus_signer_releases_nothing_when_the_sync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = get_suite("intl").generate_private_key()
    path = tmp_path / "signer.bin"
    signer = ConsensusSigner(key, path)
    before = signer.sign(Vote(PREVOTE, "main", 5, 0, b"\x01" * 32))
    stored = path.read_bytes()
    spy = FsyncSpy(monkeypatch, fail=True)
    with pytest.raises(OSError, match="injected"):
        spy.returns(lambda: signer.sign(Vote(PRECOMMIT, "main", 5, 0, b"\x01" * 32)))
    assert "returned" not in spy.events and path.read_bytes() == stored
    # The guard in memory did not move either: the old position still answers with its signature.
    assert signer.sign(Vote(PREVOTE, "main", 5, 0, b"\x01" * 32)) == before


def test_solo_signer_syncs_its_guard_before_releasing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = get_suite("intl").generate_private_key()
    path = tmp_path / "signer_state.json"
    signer = Signer(key, path)
    spy = FsyncSpy(monkeypatch)
    vote = Vote(PRECOMMIT, "main", 2, 0, b"\x04" * 32)
    signature = spy.returns(lambda: signer.sign_vote(vote))
    assert spy.events == [
        "fsync signer_state.tmp",
        "replace signer_state.tmp signer_state.json",
        "fsync dir",
        "returned",
    ]
    ((synced_path, synced_bytes),) = spy.synced
    assert synced_path == path.with_suffix(".tmp") and synced_bytes == path.read_bytes()
    assert b'"height": 2' in synced_bytes and signature.hex().encode() in synced_bytes
    assert (b"\x04" * 32).hex().encode() in synced_bytes
    # A failing sync releases nothing, and a restart still knows the last signed vote.
    failing = FsyncSpy(monkeypatch, fail=True)
    with pytest.raises(OSError, match="injected"):
        failing.returns(lambda: signer.sign_vote(Vote(PRECOMMIT, "main", 3, 0, b"\x05" * 32)))
    assert "returned" not in failing.events
    assert Signer(key, path).sign_vote(vote) == signature


def test_wal_syncs_each_record_before_append_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = get_suite("intl").generate_private_key()
    records = _records(ValidatorSet([Validator(key.public_bytes(), 1, "v")]))
    path = tmp_path / "consensus.wal"
    wal = WriteAheadLog(path)
    spy = FsyncSpy(monkeypatch)
    for i, record in enumerate(records):
        wal.append(record)
        # This append's fsync was on the WAL, and the record was in it when synced.
        synced_path, synced_bytes = spy.synced[-1]
        assert (synced_path, len(spy.synced)) == (path, i + 1)
        assert synced_bytes.endswith(encode(record)) and synced_bytes == path.read_bytes()
    FsyncSpy(monkeypatch, fail=True)
    with pytest.raises(OSError, match="injected"):
        wal.append(TimeoutFired(3, 1, 0))
    wal.close()
