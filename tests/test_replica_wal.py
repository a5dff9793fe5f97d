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

from zhongshu.consensus.messages import (
    Proposal,
    SignedProposal,
    SignedVote,
    StartHeight,
    TimeoutFired,
    proposal_sign_bytes,
    vote_sign_bytes,
)
from zhongshu.consensus.proposer import get_proposer
from zhongshu.crypto import get_suite
from zhongshu.ledger.types import PRECOMMIT, PREVOTE, ChainParams, Genesis, Validator, ValidatorSet, Vote
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.replica import Replica, _Validated
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


def test_a_block_precommitted_before_a_crash_is_stored_after_it(tmp_path: Path) -> None:
    """Found by the state network test: all four nodes killed while height 1 was decided (2f+1
    precommits) but not yet stored. The body lived only in the precommitters' memory, so after
    the restart every node knew the decision and none had the block: the chain stopped for good.
    A replica now keeps the body on disk before it precommits, and a restart brings it back."""
    keys = [get_suite("sm").generate_private_key() for _ in range(4)]
    validators = ValidatorSet([Validator(k.public_bytes(), 1, f"n{i}") for i, k in enumerate(keys)])
    genesis = Genesis("walchain", "sm", 1_700_000_000_000, validators, ChainParams())
    proposer_key = get_proposer(validators, 1, 0)
    me = next(k for k in keys if k.public_bytes() != proposer_key)
    proposer = next(k for k in keys if k.public_bytes() == proposer_key)
    others = [k for k in keys if k is not me]

    def start() -> Replica:
        mux = ChannelMux(lambda on_message: _Nowhere(), me.public_bytes())  # type: ignore[arg-type,return-value]
        channel = mux.open("walchain", {k.public_bytes(): k.public_bytes() for k in keys})
        signer = ConsensusSigner(me, tmp_path / "signer.bin")
        return Replica(genesis, tmp_path / "data", signer, channel, verify_workers=1)

    def vote(key: Any, kind: int, block_hash: bytes) -> SignedVote:
        v = Vote(kind, "walchain", 1, 0, block_hash)
        return SignedVote(v, key.public_bytes(), key.sign(vote_sign_bytes(v)))

    replica = start()
    built = replica.execute_block(1, genesis.time + 1000, [], [], proposer_key)
    block_hash = built.block_hash
    proposal = Proposal("walchain", 1, 0, block_hash, -1, proposer_key)

    async def until_precommit() -> None:
        await replica._replay_or_start()
        await replica._feed(SignedProposal(proposal, proposer.sign(proposal_sign_bytes(proposal))))
        await replica._process(_Validated(1, block_hash, built))
        for key in others:
            await replica._feed(vote(key, PREVOTE, block_hash))

    try:
        asyncio.run(until_precommit())
        # This node precommitted the block (its signer remembers it) ...
        assert replica.csigner.last is not None and replica.csigner.last.step == PRECOMMIT
        assert replica.height == 0
    finally:
        # ... and is killed before the others' precommits arrive.
        replica.close()

    again = start()

    async def after_restart() -> None:
        await again._replay_or_start()
        for key in others:
            await again._feed(vote(key, PRECOMMIT, block_hash))

    try:
        asyncio.run(after_restart())
        # Decided by the precommits that arrive after the restart, and stored from its own disk.
        assert again.height == 1
        assert again.last_block_hash == block_hash
    finally:
        again.close()
