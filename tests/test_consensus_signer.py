"""The BFT signer's guard on disk, and the consensus WAL's torn-record rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhongshu.codec import encode
from zhongshu.consensus.messages import BlockData, Proposal, StartHeight, TimeoutFired
from zhongshu.crypto import get_suite
from zhongshu.ledger.types import PRECOMMIT, PREVOTE, Validator, ValidatorSet, Vote
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.signer import DoubleSignRefused
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
