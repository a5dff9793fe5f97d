"""A replica's write-ahead log holds the running height only, and a restart replays it.

Found by the `up` stop/start test on a hub: an input of the height just stored (a vote queued
before the commit, a stale timer) was written to the log after the commit had reset it, ahead
of the next height's StartHeight; a restart then found no StartHeight first, dropped the whole
log, and its engine no longer knew what its signer had signed: every node refused to sign again
in that round and the chain stopped. These tests drive a Replica in process, on a channel of a
mux whose transport sends nowhere (the log and the engine are what is checked).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from zhongshu.consensus.messages import StartHeight, TimeoutFired
from zhongshu.crypto import get_suite
from zhongshu.ledger.types import ChainParams, Genesis, Validator, ValidatorSet
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.replica import Replica
from zhongshu.p2p.channels import ChannelMux


class _Nowhere:
    def send(self, peer: bytes, payload: bytes) -> bool:
        return False

    def multicast(self, peers: Any, payload: bytes) -> int:
        return 0

    def peers(self) -> list[Any]:
        return []


def _replica(tmp_path: Path) -> Replica:
    keys = [get_suite("sm").generate_private_key() for _ in range(4)]
    validators = ValidatorSet([Validator(k.public_bytes(), 1, f"n{i}") for i, k in enumerate(keys)])
    genesis = Genesis("walchain", "sm", 1_700_000_000_000, validators, ChainParams())
    mux = ChannelMux(lambda on_message: _Nowhere(), keys[0].public_bytes())  # type: ignore[arg-type,return-value]
    channel = mux.open("walchain", {k.public_bytes(): k.public_bytes() for k in keys})
    signer = ConsensusSigner(keys[0], tmp_path / "signer.bin")
    return Replica(genesis, tmp_path / "data", signer, channel, verify_workers=1)


def test_an_input_of_a_stored_height_is_not_logged(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    try:
        # Height 0 is "stored" (nothing runs yet): a timer of it changes nothing.
        asyncio.run(replica._feed(TimeoutFired(0, 0, 0)))
        assert replica.wal.read() == []
    finally:
        replica.close()


def test_a_restart_replays_from_the_running_heights_start(tmp_path: Path) -> None:
    replica = _replica(tmp_path)
    validators = replica.genesis.validators
    # A stale record first (as an older node wrote it), then the running height's own.
    for record in (TimeoutFired(0, 0, 0), StartHeight(1, validators), TimeoutFired(1, 0, 0)):
        replica.wal.append(record)
    replica.close()
    again = _replica_at(tmp_path, replica)
    try:
        asyncio.run(again._replay_or_start())
        # The engine runs height 1 again, where it was, instead of waiting idle at height 0.
        assert again.engine.get_state().height == 1
        assert len(again.wal.read()) == 3
    finally:
        again.close()


def _replica_at(tmp_path: Path, before: Replica) -> Replica:
    """A replica on the same files and key as ``before`` (a restart)."""
    mux = ChannelMux(lambda on_message: _Nowhere(), before.csigner.public_key)  # type: ignore[arg-type,return-value]
    members = {v.public_key: v.public_key for v in before.genesis.validators.validators}
    channel = mux.open("walchain", members)
    signer = ConsensusSigner(before.csigner.key, tmp_path / "signer.bin")
    return Replica(before.genesis, tmp_path / "data", signer, channel, verify_workers=1)
